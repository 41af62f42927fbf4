"""Resize (nearest / linear / cubic, every ONNX coordinate transformation mode).

Resize is separable: each axis whose size or scale changes is interpolated in turn, in
float64. Per axis, each output position reads `n` input taps (clamped to the edge) with
weights; the taps and weights follow the ONNX reference definition, and a Numba loop
applies them."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .registry import contiguous, kernel


@njit(cache=True)
def _interp_axis(x, taps, weights, out):
    # x [outer, n_in, inner], taps/weights [n_out, n], out [outer, n_out, inner]
    outer, _, inner = x.shape
    n_out, n = taps.shape
    for o in range(outer):
        for j in range(n_out):
            for i in range(inner):
                acc = 0.0
                for t in range(n):
                    acc += weights[j, t] * x[o, taps[j, t], i]
                out[o, j, i] = acc


def _source_coords(mode: str, n_out: int, n_in: int, scale: float, roi) -> np.ndarray:
    """Input coordinate of every output index (ONNX coordinate_transformation_mode)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # the (possibly fractional) output length the transform assumes
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "align_corners":
        return np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            x = np.full(n_out, (end - start) * (n_in - 1) / 2)
        else:
            x = y * (end - start) * (n_in - 1) / (width - 1)
        return x + start * (n_in - 1)
    raise ValueError(f"unknown coordinate_transformation_mode '{mode}'")


def _nearest_weights(ratio: np.ndarray, mode: str) -> np.ndarray:
    """Weights of the two taps (floor, floor+1) for nearest mode; ratio in (0, 1]."""
    if mode == "round_prefer_floor":
        up = ratio > 0.5
    elif mode == "round_prefer_ceil":
        up = ratio >= 0.5
    elif mode == "floor":
        up = np.zeros(ratio.shape, bool)
    elif mode == "ceil":
        up = np.ones(ratio.shape, bool)
    else:
        raise ValueError(f"unknown nearest_mode '{mode}'")
    up = up | (ratio == 1.0)  # an exact integer coordinate is the right tap with ratio 1
    return np.stack([~up, up], axis=1).astype(np.float64)


def _cubic_antialias(t: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel (Keys) at distance t, as ONNX's antialias path writes it."""
    t = np.abs(t)
    near = (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    far = a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _cubic(r: np.ndarray, a: float) -> np.ndarray:
    """Weights of taps base-1 .. base+2 at ratio r, written as the ONNX definition does
    (so rounding ties of integer outputs come out the same)."""
    s = 1 - r
    return np.stack([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                     ((a + 2) * r - (a + 3)) * r * r + 1,
                     ((a + 2) * s - (a + 3)) * s * s + 1,
                     ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a], axis=1)


def axis_taps(a: dict, n_in: int, n_out: int, scale: float, roi):
    """(taps [n_out, n] int64, weights [n_out, n] f64, extrapolated [n_out] bool)."""
    mode = a["mode"]
    x = _source_coords(a["coordinate_transformation_mode"], n_out, n_in, scale, roi)
    base = np.floor(x)
    # ONNX prefers the left neighbour: an integer coordinate k is base k-1 with ratio 1
    exact = x == base
    base = np.where(exact, base - 1, base).astype(np.int64)
    ratio = np.where(exact, 1.0, x - np.floor(x))
    antialias = bool(a.get("antialias", 0)) and scale < 1.0 and mode != "nearest"
    # tap k of an output is input index base + offsets[k], at distance offsets[k] - ratio
    if mode == "nearest":
        offsets = np.arange(0, 2)
        weights = _nearest_weights(ratio, a["nearest_mode"])
    elif mode in ("linear", "cubic") and not antialias:
        cubic = mode == "cubic"
        offsets = np.arange(-1, 3) if cubic else np.arange(0, 2)
        weights = (_cubic(ratio, float(a["cubic_coeff_a"])) if cubic
                   else np.stack([1 - ratio, ratio], axis=1))
    elif mode in ("linear", "cubic"):  # antialias: the kernel is stretched by 1/scale
        support = 1.0 if mode == "linear" else 2.0
        start = int(math.floor(-support / scale) + 1)
        offsets = np.arange(start, 2 - start)
        dist = (offsets[None, :] - ratio[:, None]) * scale
        if mode == "linear":
            weights = np.clip(1 - np.abs(dist), 0, 1)
        else:
            weights = _cubic_antialias(dist, float(a["cubic_coeff_a"]))
        weights = weights / weights.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"unknown Resize mode '{mode}'")
    taps = base[:, None] + offsets[None, :]
    if a["exclude_outside"]:
        weights = np.where((taps < 0) | (taps >= n_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    outside = (x < 0) | (x > n_in - 1) if a["coordinate_transformation_mode"] == \
        "tf_crop_and_resize" else np.zeros(n_out, bool)
    return np.clip(taps, 0, n_in - 1), contiguous(weights), outside


@kernel("Resize")
def resize(op, ins):
    x, a = ins[0], op.attrs
    sizes, scales = list(a["sizes"]), [float(s) for s in a["scales"]]
    roi = a.get("roi") or [0.0] * x.ndim + [1.0] * x.ndim
    y = x.astype(np.float64)
    for axis in range(x.ndim):
        n_in, n_out, scale = y.shape[axis], int(sizes[axis]), scales[axis]
        axis_roi = (float(roi[axis]), float(roi[axis + x.ndim]))
        if n_in == n_out and math.isclose(scale, 1.0) and axis_roi == (0.0, 1.0):
            continue  # identity along this axis
        taps, weights, outside = axis_taps(a, n_in, n_out, scale, axis_roi)
        x3 = contiguous(y).reshape(int(np.prod(y.shape[:axis])), n_in, -1)
        out = np.empty((x3.shape[0], n_out, x3.shape[2]), np.float64)
        _interp_axis(x3, taps, weights, out)
        out[:, outside, :] = a["extrapolation_value"]
        y = out.reshape(y.shape[:axis] + (n_out,) + y.shape[axis + 1:])
    if x.dtype.kind in "iu":  # integer images: round and saturate
        info = np.iinfo(x.dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return [y.astype(x.dtype)]
