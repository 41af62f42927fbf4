"""Reference kernels of the int8 ops, with exact integer semantics (compiler/quant.py has the
arithmetic). Sums of integer products are formed in float64 by the float kernels' loops:
every partial sum is an integer below 2^53, so they are exact."""
from __future__ import annotations

import numpy as np
from numba import njit

from edgecc.quant import (dequantize, per_axis, qrange, quantize, ratio,
                          requantize)

from .conv import _conv3d
from .dense import matmul_f64
from .pooling import pool_output_size
from .registry import kernel
from .spatial import lift_3d, pads_3d, params_3d


def _out_params(op):
    a = op.attrs
    lo, hi = a.get("clamp") or qrange(a["to"])
    return float(a["scale"]), int(a["zero_point"]), int(lo), int(hi), np.dtype(
        {"u8": np.uint8, "i8": np.int8}[a["to"]])


def _centered(x: np.ndarray, t) -> np.ndarray:
    """x - zero_point as float64 (exact)."""
    return x.astype(np.float64) - float(t.quant.zero_point[0])


@kernel("QuantizeLinear")
def quantize_linear(op, ins):
    return [quantize(ins[0], op.output.type.quant, op.attrs["to"])]


@kernel("DequantizeLinear")
def dequantize_linear(op, ins):
    return [dequantize(ins[0], op.inputs[0].type.quant)]


@kernel("QConv")
def qconv(op, ins):
    x, w = ins[0], ins[1]
    tx = op.inputs[0].type
    scale, zp, lo, hi, dt = _out_params(op)
    a = op.attrs
    spatial = x.ndim - 2
    m = w.shape[0]
    bias = ins[2].astype(np.float64)
    x3 = lift_3d(_centered(x, tx), spatial)
    w3 = lift_3d(w.astype(np.float64), spatial)
    begins, _ = pads_3d(a["pads"], spatial)
    shape = op.output.type.shape
    acc = np.empty(shape[:2] + (1,) * (3 - spatial) + shape[2:], np.float64)
    _conv3d(x3, w3, bias, acc, params_3d(a["strides"], spatial, 1), begins,
            params_3d(a["dilations"], spatial, 1), int(a["group"]))
    acc = acc.reshape(op.output.type.shape).astype(np.int64)
    mult = per_axis(ins[3], 1, acc.ndim, m)
    return [requantize(acc, mult, zp, lo, hi).astype(dt)]


@kernel("QMatMul")
def qmatmul(op, ins):
    a, b = ins[0], ins[1]
    ta = op.inputs[0].type
    scale, zp, lo, hi, dt = _out_params(op)
    acc = matmul_f64(_centered(a, ta).reshape(1, -1, a.shape[-1]), b.astype(np.float64)[None])
    acc = (acc + ins[2].astype(np.float64)).astype(np.int64).reshape(op.output.type.shape)
    return [requantize(acc, ins[3], zp, lo, hi).astype(dt)]


@kernel("QAdd", "QMul")
def qbinary(op, ins):
    ta, tb = op.inputs[0].type, op.inputs[1].type
    scale, zp, lo, hi, dt = _out_params(op)
    ca, cb = _centered(ins[0], ta), _centered(ins[1], tb)
    sa, sb = ta.quant.scale[0], tb.quant.scale[0]
    if op.kind == "QAdd":
        ma = np.float64(ratio(sa, scale))
        mb = np.float64(ratio(sb, scale)) * op.attrs["b_sign"]
        r = ca * ma + cb * mb                       # exact products, one rounding (the sum)
    else:
        r = (ca * cb) * np.float64(ratio(np.float64(sa) * np.float64(sb), scale))
    r = np.rint(r)
    return [np.clip(r + zp, lo, hi).astype(dt)]


@kernel("QLookup")
def qlookup(op, ins):
    x, table = ins
    lo = qrange(op.inputs[0].type.dtype)[0]
    if table.ndim == 1:
        return [table[x.astype(np.int64) - lo]]
    channel = np.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return [table[channel, x.astype(np.int64) - lo]]


def _average(op, sums: np.ndarray, counts) -> list[np.ndarray]:
    """clamp(rint(float64(sum) * M / count) + z), M = float32(sX / s)."""
    scale, zp, lo, hi, dt = _out_params(op)
    m = np.float64(ratio(op.inputs[0].type.quant.scale[0], scale))
    r = np.rint(sums * m / np.asarray(counts, np.float64))
    return [np.clip(r + zp, lo, hi).astype(dt)]


@kernel("QGlobalAveragePool")
def qglobal_average_pool(op, ins):
    x = _centered(ins[0], op.inputs[0].type)
    axes = tuple(range(2, x.ndim))
    count = int(np.prod(x.shape[2:]))
    return _average(op, x.sum(axis=axes, keepdims=True), count)


@njit(cache=True)
def _window_sums(x, sums, counts, kernel_shape, strides, begins, ends, dilations,
                 include_pad):
    N, C, D, H, W = x.shape
    OD, OH, OW = sums.shape[2], sums.shape[3], sums.shape[4]
    for od in range(OD):
        for oh in range(OH):
            for ow in range(OW):
                count = 0
                padded = 0
                for kd in range(kernel_shape[0]):
                    iz = od * strides[0] - begins[0] + kd * dilations[0]
                    for kh in range(kernel_shape[1]):
                        iy = oh * strides[1] - begins[1] + kh * dilations[1]
                        for kw in range(kernel_shape[2]):
                            ix = ow * strides[2] - begins[2] + kw * dilations[2]
                            if -begins[0] <= iz < D + ends[0] and -begins[1] <= iy < H + \
                                    ends[1] and -begins[2] <= ix < W + ends[2]:
                                padded += 1
                            if 0 <= iz < D and 0 <= iy < H and 0 <= ix < W:
                                count += 1
                                for n in range(N):
                                    for c in range(C):
                                        sums[n, c, od, oh, ow] += x[n, c, iz, iy, ix]
                counts[od, oh, ow] = padded if include_pad else count


@kernel("QAveragePool")
def qaverage_pool(op, ins):
    a = op.attrs
    spatial = ins[0].ndim - 2
    x3 = lift_3d(_centered(ins[0], op.inputs[0].type), spatial)
    ks = params_3d(a["kernel_shape"], spatial, 1)
    st = params_3d(a["strides"], spatial, 1)
    dl = params_3d(a["dilations"], spatial, 1)
    begins, ends = pads_3d(a["pads"], spatial)
    out_sp = [pool_output_size(x3.shape[2 + i], ks[i], st[i], begins[i], ends[i], dl[i],
                               a["ceil_mode"]) for i in range(3)]
    sums = np.zeros(x3.shape[:2] + tuple(out_sp), np.float64)
    counts = np.zeros(tuple(out_sp), np.int64)
    _window_sums(x3, sums, counts, ks, st, begins, ends, dl, bool(a["count_include_pad"]))
    shape = op.output.type.shape
    return _average(op, sums.reshape(shape), counts.reshape(shape[2:]))
