"""MaxPool, AveragePool (one 3-D kernel; 1-D/2-D lifted) and the global pools.

Windows follow onnxruntime: taps at o*stride - pad_begin + k*dilation; only taps inside the
input are read. AveragePool divides by the number of taps inside the input, or with
count_include_pad by the taps inside the padded extent [-pad_begin, size + pad_end)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .layout import blocked_layout
from .registry import compute_dtype, kernel
from .spatial import lift_3d, pads_3d, params_3d


@njit(cache=True)
def _pool3d(x, out, kernel_shape, strides, begins, ends, dilations, is_max, include_pad):
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        best = -np.inf
                        total = 0.0
                        count = 0
                        padded = 0
                        for kd in range(kernel_shape[0]):
                            iz = od * strides[0] - begins[0] + kd * dilations[0]
                            zin = 0 <= iz < D
                            zpad = -begins[0] <= iz < D + ends[0]
                            for kh in range(kernel_shape[1]):
                                iy = oh * strides[1] - begins[1] + kh * dilations[1]
                                yin = 0 <= iy < H
                                ypad = -begins[1] <= iy < H + ends[1]
                                for kw in range(kernel_shape[2]):
                                    ix = ow * strides[2] - begins[2] + kw * dilations[2]
                                    if zpad and ypad and -begins[2] <= ix < W + ends[2]:
                                        padded += 1
                                    if zin and yin and 0 <= ix < W:
                                        v = np.float64(x[n, c, iz, iy, ix])
                                        count += 1
                                        total += v
                                        if v > best or v != v:
                                            best = v
                        if is_max:
                            out[n, c, od, oh, ow] = best
                        else:
                            k = padded if include_pad else count
                            out[n, c, od, oh, ow] = total / k if k > 0 else np.nan


def pool_output_size(size, k, s, pb, pe, d, ceil_mode) -> int:
    span = (k - 1) * d + 1
    if not ceil_mode:
        return (size + pb + pe - span) // s + 1
    out = math.ceil((size + pb + pe - span) / s) + 1
    if (out - 1) * s >= size + pb:  # the last window must start inside the input or pad_begin
        out -= 1
    return out


def _pool(a: dict, x, is_max: bool, include_pad: bool):
    spatial = x.ndim - 2
    dtype = np.dtype(np.float64) if x.dtype.kind in "iu" else compute_dtype(x)  # int8 MaxPool
    x3 = lift_3d(x.astype(dtype, copy=False), spatial)
    ks = params_3d(a["kernel_shape"], spatial, 1)
    st = params_3d(a["strides"] or [1] * spatial, spatial, 1)
    dl = params_3d(a.get("dilations") or [1] * spatial, spatial, 1)
    begins, ends = pads_3d(a["pads"], spatial)
    out_sp = [pool_output_size(x3.shape[2 + i], ks[i], st[i], begins[i], ends[i], dl[i],
                               a["ceil_mode"]) for i in range(3)]
    if min(out_sp) <= 0:
        raise ValueError(f"output spatial size {out_sp[3 - spatial:]} is not positive")
    out = np.empty(x3.shape[:2] + tuple(out_sp), dtype)
    _pool3d(x3, out, ks, st, begins, ends, dl, is_max, include_pad)
    return [out.reshape(out.shape[:2] + out.shape[5 - spatial:]).astype(x.dtype, copy=False)]


@kernel("MaxPool")
@blocked_layout
def max_pool(op, ins):
    return _pool(op.attrs, ins[0], True, False)


@kernel("AveragePool")
@blocked_layout
def average_pool(op, ins):
    return _pool(op.attrs, ins[0], False, bool(op.attrs["count_include_pad"]))


@kernel("GlobalAveragePool", "GlobalMaxPool")
@blocked_layout
def global_pool(op, ins):
    x = ins[0]
    spatial = x.ndim - 2
    whole = dict(kernel_shape=list(x.shape[2:]), strides=[1] * spatial, pads=[0] * 2 * spatial,
                 dilations=[1] * spatial, ceil_mode=0)
    return _pool(whole, x, op.kind == "GlobalMaxPool", False)
