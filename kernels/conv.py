"""Conv and ConvTranspose: direct loops, float64 accumulation, one 3-D kernel each
(1-D and 2-D cases are lifted to 3-D with unit dims). The innermost loop runs over the
contiguous output (Conv) or input (ConvTranspose) width with its valid range precomputed."""
from __future__ import annotations

import numpy as np
from numba import njit

from .layout import blocked_layout
from .registry import compute_dtype, kernel
from .spatial import lift_3d, pads_3d, params_3d


@njit(cache=True)
def _conv3d(x, w, bias, out, strides, pads, dilations, group):
    # x [N,C,D,H,W]  w [M,C/group,KD,KH,KW]  bias [M] (f64)  out [N,M,OD,OH,OW]
    N, C, D, H, W = x.shape
    M, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = strides[0], strides[1], strides[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilations[0], dilations[1], dilations[2]
    Mg = M // group
    # for kernel column kw, input column iw = ow * sw + kw * dw - pw is inside [0, W)
    # exactly for ow in [ow0[kw], ow1[kw])
    ow0 = np.empty(KW, np.int64)
    ow1 = np.empty(KW, np.int64)
    for kw in range(KW):
        off = kw * dw - pw
        ow0[kw] = max(0, -(off // sw))
        ow1[kw] = min(OW, (W - 1 - off) // sw + 1)
    row = np.empty(OW, np.float64)  # one output row, accumulated in float64
    for n in range(N):
        for m in range(M):
            ci0 = (m // Mg) * Cg
            for od in range(OD):
                for oh in range(OH):
                    row[:] = bias[m]
                    for c in range(Cg):
                        for kd in range(KD):
                            iz = od * sd - pd + kd * dd
                            if iz < 0 or iz >= D:
                                continue
                            for kh in range(KH):
                                iy = oh * sh - ph + kh * dh
                                if iy < 0 or iy >= H:
                                    continue
                                xrow = x[n, ci0 + c, iz, iy]
                                for kw in range(KW):
                                    wv = np.float64(w[m, c, kd, kh, kw])
                                    off = kw * dw - pw
                                    # indices are >= 0 here; unsigned indexing lets Numba
                                    # skip its negative-index wraparound, so LLVM vectorizes
                                    for ow in range(ow0[kw], ow1[kw]):
                                        row[np.uint64(ow)] += wv * xrow[np.uint64(ow * sw + off)]
                    for ow in range(OW):
                        out[n, m, od, oh, ow] = row[ow]


@njit(cache=True)
def _conv_transpose3d(x, w, bias, out, strides, pads, dilations, group):
    # x [N,C,D,H,W]  w [C,M/group,KD,KH,KW]  bias [M] (f64)  out [N,M,OD,OH,OW]
    N, C, D, H, W = x.shape
    _, Mg, KD, KH, KW = w.shape
    M, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = strides[0], strides[1], strides[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilations[0], dilations[1], dilations[2]
    Cg = C // group
    acc = np.empty((OD, OH, OW), np.float64)
    for n in range(N):
        for m in range(M):
            g = m // Mg
            mg = m - g * Mg
            acc[:] = bias[m]
            for c in range(Cg):
                ci = g * Cg + c
                for kd in range(KD):
                    for kh in range(KH):
                        for kw in range(KW):
                            wv = np.float64(w[ci, mg, kd, kh, kw])
                            off = kw * dw - pw          # ow = iw * sw + off
                            iw0 = max(0, -(off // sw))  # first iw with ow >= 0
                            iw1 = min(W, (OW - 1 - off) // sw + 1)
                            for iz in range(D):
                                oz = iz * sd - pd + kd * dd
                                if oz < 0 or oz >= OD:
                                    continue
                                for iy in range(H):
                                    oy = iy * sh - ph + kh * dh
                                    if oy < 0 or oy >= OH:
                                        continue
                                    arow = acc[oz, oy]
                                    xrow = x[n, ci, iz, iy]
                                    for iw in range(iw0, iw1):  # unsigned: see _conv3d
                                        arow[np.uint64(iw * sw + off)] += wv * xrow[np.uint64(iw)]
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        out[n, m, od, oh, ow] = acc[od, oh, ow]


def _prepare(op, ins):
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    a = op.attrs
    spatial = x.ndim - 2
    dtype = compute_dtype(x)
    x3 = lift_3d(x.astype(dtype, copy=False), spatial)
    w3 = lift_3d(w.astype(dtype, copy=False), spatial)
    begins, ends = pads_3d(a["pads"], spatial)
    strides = params_3d(a["strides"], spatial, 1)
    dilations = params_3d(a["dilations"], spatial, 1)
    kernel_shape = params_3d(a["kernel_shape"], spatial, 1)
    if tuple(kernel_shape) != w3.shape[2:]:
        raise ValueError(f"kernel_shape {list(a['kernel_shape'])} does not match the weight "
                         f"shape {list(w.shape)}")
    return x, b, dtype, spatial, x3, w3, begins, ends, strides, dilations


def _bias(b, m: int) -> np.ndarray:
    return np.zeros(m, np.float64) if b is None else b.astype(np.float64).reshape(m)


@kernel("Conv")
@blocked_layout
def conv(op, ins):
    x, b, dtype, spatial, x3, w3, begins, ends, strides, dilations = _prepare(op, ins)
    group = op.attrs["group"]
    M, Cg = w3.shape[:2]
    if x3.shape[1] != Cg * group or M % group:
        raise ValueError(f"input has {x3.shape[1]} channels, weight expects {Cg}×group={group}")
    span = (np.array(w3.shape[2:]) - 1) * dilations + 1
    out_sp = (np.array(x3.shape[2:]) + begins + ends - span) // strides + 1
    if np.any(out_sp <= 0):
        raise ValueError(f"output spatial size {list(out_sp[3 - spatial:])} is not positive")
    out = np.empty((x3.shape[0], M, *out_sp), dtype)
    _conv3d(x3, w3, _bias(b, M), out, strides, begins, dilations, group)
    return [out.reshape(out.shape[:2] + out.shape[5 - spatial:]).astype(x.dtype, copy=False)]


@kernel("ConvTranspose")
def conv_transpose(op, ins):
    x, b, dtype, spatial, x3, w3, begins, ends, strides, dilations = _prepare(op, ins)
    group = op.attrs["group"]
    if x3.shape[1] != w3.shape[0] or x3.shape[1] % group:
        raise ValueError(f"input has {x3.shape[1]} channels, weight has {w3.shape[0]}")
    M = w3.shape[1] * group
    out_pad = params_3d(op.attrs["output_padding"] or [0] * spatial, spatial, 0)
    span = (np.array(w3.shape[2:]) - 1) * dilations + 1
    out_sp = strides * (np.array(x3.shape[2:]) - 1) + out_pad + span - begins - ends
    if np.any(out_sp <= 0):
        raise ValueError(f"output spatial size {list(out_sp[3 - spatial:])} is not positive")
    out = np.empty((x3.shape[0], M, *out_sp), dtype)
    _conv_transpose3d(x3, w3, _bias(b, M), out, strides, begins, dilations, group)
    return [out.reshape(out.shape[:2] + out.shape[5 - spatial:]).astype(x.dtype, copy=False)]
