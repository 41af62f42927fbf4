"""Normalizations (inference): BatchNormalization, InstanceNormalization,
LayerNormalization, LRN. Statistics and affine math in float64."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .layout import blocked_layout
from .registry import contiguous, compute_dtype, kernel


@njit(cache=True)
def _channel_affine(x, scale, shift, out):
    # x [N, C, S]: out = x * scale[c] + shift[c]
    N, C, S = x.shape
    for n in range(N):
        for c in range(C):
            for s in range(S):
                out[n, c, s] = np.float64(x[n, c, s]) * scale[c] + shift[c]


@kernel("BatchNormalization")
def batch_norm(op, ins):
    x, scale, bias, mean, var = (a.astype(np.float64) if i else a for i, a in enumerate(ins[:5]))
    dtype = compute_dtype(x)
    # y = (x - mean) / sqrt(var + eps) * scale + bias = x * k + (bias - mean * k)
    k = scale / np.sqrt(var + op.attrs["epsilon"])
    x3 = contiguous(x, dtype=dtype).reshape(x.shape[0], x.shape[1], -1)
    out = np.empty(x3.shape, dtype)
    _channel_affine(x3, k, bias - mean * k, out)
    return [out.reshape(x.shape).astype(x.dtype, copy=False)]


@njit(cache=True)
def _normalize_rows(x, scale, bias, eps, out):
    # x [R, S]: each row → (x - mean) / sqrt(var + eps) * scale[r % len] + bias[...]
    # scale/bias are [P, S] with R a multiple of P (per-row or per-element affine).
    R, S = x.shape
    P = scale.shape[0]
    for r in range(R):
        mean = 0.0
        for s in range(S):
            mean += np.float64(x[r, s])
        mean /= S
        var = 0.0
        for s in range(S):
            d = np.float64(x[r, s]) - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / S + eps)
        p = r % P
        for s in range(S):
            out[r, s] = (np.float64(x[r, s]) - mean) * inv * scale[p, s] + bias[p, s]


@kernel("InstanceNormalization")
def instance_norm(op, ins):
    x, scale, bias = ins
    dtype = compute_dtype(x)
    n, c = x.shape[:2]
    rows = contiguous(x, dtype=dtype).reshape(n * c, -1)
    s = rows.shape[1]
    sc = np.repeat(scale.astype(np.float64).reshape(c, 1), s, axis=1)
    bi = np.repeat(bias.astype(np.float64).reshape(c, 1), s, axis=1)
    out = np.empty(rows.shape, dtype)
    _normalize_rows(rows, sc, bi, float(op.attrs["epsilon"]), out)
    return [out.reshape(x.shape).astype(x.dtype, copy=False)]


@kernel("GroupNormalization")
def group_norm(op, ins):
    x, scale, bias = ins
    dtype = compute_dtype(x)
    n, c, g = x.shape[0], x.shape[1], op.attrs["num_groups"]
    rows = contiguous(x, dtype=dtype).reshape(n * g, -1)       # one row per (n, group)
    per_channel = [np.repeat(a.astype(np.float64), c // g) if a.shape[0] != c or g == c
                   else a.astype(np.float64) for a in (scale, bias)]
    spatial = rows.shape[1] // (c // g)
    sc, bi = (np.repeat(a.reshape(g, c // g), spatial, axis=1) for a in per_channel)
    out = np.empty(rows.shape, dtype)
    _normalize_rows(rows, contiguous(sc), contiguous(bi), float(op.attrs["epsilon"]), out)
    return [out.reshape(x.shape).astype(x.dtype, copy=False)]


@kernel("LayerNormalization")
def layer_norm(op, ins):
    x, scale = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    axis = op.attrs["axis"]
    dtype = compute_dtype(x)
    inner_shape = x.shape[axis:]
    rows = contiguous(x, dtype=dtype).reshape(-1, int(np.prod(inner_shape)))
    sc = np.broadcast_to(scale.astype(np.float64), inner_shape).reshape(1, -1)
    bi = (np.zeros_like(sc) if bias is None else
          np.broadcast_to(bias.astype(np.float64), inner_shape).reshape(1, -1))
    out = np.empty(rows.shape, dtype)
    _normalize_rows(rows, contiguous(sc), contiguous(bi),
                    float(op.attrs["epsilon"]), out)
    return [out.reshape(x.shape).astype(x.dtype, copy=False)]


@njit(cache=True)
def _lrn(x, out, size, alpha, beta, bias):
    # x [N, C, S]; window over channels [c - (size-1)//2, c + ceil((size-1)/2)]
    N, C, S = x.shape
    lo_off = (size - 1) // 2
    hi_off = size - 1 - lo_off
    for n in range(N):
        for c in range(C):
            lo = max(0, c - lo_off)
            hi = min(C - 1, c + hi_off)
            for s in range(S):
                sq = 0.0
                for j in range(lo, hi + 1):
                    v = np.float64(x[n, j, s])
                    sq += v * v
                out[n, c, s] = np.float64(x[n, c, s]) / (bias + alpha / size * sq) ** beta


@kernel("LRN")
@blocked_layout
def lrn(op, ins):
    x, a = ins[0], op.attrs
    dtype = compute_dtype(x)
    x3 = contiguous(x, dtype=dtype).reshape(x.shape[0], x.shape[1], -1)
    out = np.empty(x3.shape, dtype)
    _lrn(x3, out, int(a["size"]), float(a["alpha"]), float(a["beta"]), float(a["bias"]))
    return [out.reshape(x.shape).astype(x.dtype, copy=False)]
