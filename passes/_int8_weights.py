"""quantize-int8's weight rounding: int8 weights that minimize each layer's output error on the
calibration activations, not each weight's own rounding error.

Rounding every weight to nearest leaves errors that add up coherently in the layer's output.
With H = Σ xᵀx over the layer's input patches (the calibration samples, float graph), the
columns are rounded one at a time and each rounding error is spread over the columns not yet
rounded in proportion to H⁻¹ (optimal brain quantization as in GPTQ, Frantar et al. 2022), so
later columns compensate for earlier ones. Scales (per output channel) are chosen first
(compiler/quant.symmetric_weight_params) and kept. The int8 layer reads its input quantized:
H gets that rounding noise's power (step²/12 per input) on its diagonal, so the weights do not
grow in directions the few calibration inputs never excite (where the input's rounding noise
would be amplified); layers seen at fewer than MIN_POSITIONS_PER_INPUT × K positions (squeeze-
excitation convs on a pooled vector) are rounded to nearest.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgecc.ir import Graph, Op, QuantParams
from edgecc.quant import quantize_weights, symmetric_weight_params

from ._int8_rewrite import contraction_weights

DAMP = 0.01                # of H's mean diagonal, added to it: keeps H⁻¹ well conditioned
MIN_POSITIONS_PER_INPUT = 4


def rounded_weights(src: Graph, float_envs: list[dict], steps: dict, bits: int = 8) -> dict:
    """{op name: (int8 weights in contraction_weights' layout, their QuantParams)} for every
    Conv / MatMul / Gemm with constant weights whose inputs the float runs recorded; `steps`
    {value name: its int8 step} for the inputs' rounding noise. Ops reading the same weights
    (an unrolled recurrence) share one rounding, fitted to all their inputs (the same tuple)."""
    groups: dict[tuple, list] = {}
    for op in src.ops:
        cw = contraction_weights(op)
        if cw is not None:
            key = (id(op.inputs[1]), op.kind, op.attrs.get("transB"), op.attrs.get("alpha"))
            groups.setdefault(key, []).append((op, cw))
    out = {}
    for members in groups.values():
        op0, (w, _, axis) = members[0]
        params = symmetric_weight_params(w, axis, bits)
        h, positions = None, 0
        for op, _ in members:
            xs = [env[op.inputs[0].name] for env in float_envs if op.inputs[0].name in env]
            part = _hessian(op, xs) if xs else None
            if part is None:
                h = None
                break
            step = steps.get(op.inputs[0].name, 0.0)
            k = part[0].shape[-1]
            part_h = part[0] + part[1] * step ** 2 / 12 * np.eye(k)
            h = part_h if h is None else h + part_h
            positions += part[1]
        if h is not None and positions < MIN_POSITIONS_PER_INPUT * h.shape[-1]:
            h = None
        q = quantize_weights(w, params, bits) if h is None else \
            _round(op0, w, axis, params, h, bits)
        shared = (q, params)
        for op, _ in members:
            out[op.name] = shared
    return out


def _patches(op: Op, x: np.ndarray) -> np.ndarray | None:
    """[groups, positions, K] inputs of each output position (a conv's receptive fields in
    W[m, c, i, j] order; a matmul's rows), or None for a form not handled (the layer is then
    rounded to nearest)."""
    if op.kind != "Conv":
        return np.asarray(x, np.float32).reshape(1, -1, x.shape[-1])
    if x.ndim != 4:
        return None
    kh, kw = op.attrs["kernel_shape"]
    sh, sw = op.attrs["strides"]
    dh, dw = op.attrs["dilations"]
    pt, pl, pb, pr = op.attrs["pads"]
    g = op.attrs["group"]
    n, c = x.shape[:2]
    oh, ow = op.output.type.shape[2:]
    xp = np.pad(np.asarray(x, np.float32), [(0, 0), (0, 0), (pt, pb), (pl, pr)])
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]        # [N, C, OH, OW, kh, kw]
    win = win.reshape(n, g, c // g, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return np.ascontiguousarray(win).reshape(g, n * oh * ow, (c // g) * kh * kw)


def _hessian(op: Op, xs: list[np.ndarray]):
    """(Σ xᵀx per group [groups, K, K] (float64), positions) over the recorded inputs."""
    h, positions = None, 0
    for x in xs:
        p = _patches(op, x)
        if p is None:
            return None
        part = np.matmul(p.transpose(0, 2, 1), p).astype(np.float64)
        h = part if h is None else h + part
        positions += p.shape[1]
    return h, positions


def _round(op: Op, w: np.ndarray, axis: int, params: QuantParams, h: np.ndarray,
           bits: int) -> np.ndarray:
    qmax = 2 ** (bits - 1) - 1
    groups = h.shape[0]
    rows = np.moveaxis(np.asarray(w, np.float64), axis, 0)        # [M, ...] output channels
    m = rows.shape[0]
    rows = rows.reshape(groups, m // groups, -1)                 # [G, M/G, K]
    s = np.asarray(params.scale, np.float64).reshape(groups, m // groups)
    q = _obq(rows, s, h, qmax)
    q = q.reshape((m,) + tuple(np.delete(w.shape, axis)))
    return np.ascontiguousarray(np.moveaxis(q, 0, axis)).astype(np.int8)


def _obq(w: np.ndarray, s: np.ndarray, h: np.ndarray, qmax: int) -> np.ndarray:
    """Column-by-column rounding of w [G, R, K] (scales s [G, R]) with each error pushed onto
    the remaining columns through the upper Cholesky factor of H⁻¹ [G, K, K]."""
    w = w.copy()
    h = h.copy()
    g, _, k = w.shape
    for i in range(g):
        dead = np.diag(h[i]) == 0                 # inputs that are always zero
        h[i][dead, dead] = 1.0
        w[i][:, dead] = 0.0
        h[i] += DAMP * np.mean(np.diag(h[i])) * np.eye(k)
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)   # H⁻¹ = Uᵀ U
    except np.linalg.LinAlgError:
        return np.clip(np.rint(w / s[:, :, None]), -qmax, qmax)
    q = np.empty_like(w)
    for j in range(k):
        col = w[:, :, j]
        qc = np.clip(np.rint(col / s), -qmax, qmax)
        q[:, :, j] = qc
        err = (col - qc * s) / u[:, j, j][:, None]
        w[:, :, j + 1:] -= err[:, :, None] * u[:, None, j, j + 1:]
    return q
