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
    """Input coordinate of every output index (ONNX coordinate_transformation_mode), computed
    in float32 as onnxruntime and the compiled kernels do (backends/tvm/lower_data.py, same
    operations in the same order): which input pixel an output reads is decided on these
    values, and float64 would decide otherwise where a coordinate lands within a float32
    rounding of an integer or a half. Returned as float64 holding the float32 values."""
    f = np.float32
    y = np.arange(n_out, dtype=np.float32)
    width = scale * n_in  # the (possibly fractional) output length the transform assumes
    if mode in ("half_pixel", "pytorch_half_pixel"):
        if mode == "pytorch_half_pixel" and width == 1:
            return np.full(n_out, -0.5)
        x = (y + f(0.5)) / f(scale) - f(0.5)
    elif mode == "half_pixel_symmetric":
        x = symmetric_offset(scale, n_in, n_out) + (y + f(0.5)) / f(scale) - f(0.5)
    elif mode == "align_corners":
        x = np.zeros(n_out, np.float32) if width == 1 else y * f((n_in - 1) / (width - 1))
    elif mode == "asymmetric":
        x = y / f(scale)
    elif mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            x = np.full(n_out, f((end - start) * (n_in - 1) / 2), np.float32)
        else:
            x = y * f((end - start) * (n_in - 1) / (width - 1))
        x = x + f(start * (n_in - 1))
    else:
        raise ValueError(f"unknown coordinate_transformation_mode '{mode}'")
    return x.astype(np.float64)


def symmetric_offset(scale: float, n_in: int, n_out: int) -> np.float32:
    """half_pixel_symmetric's offset n_in/2 * (1 - n_out / (scale * n_in)), in float32 as
    onnxruntime computes it: its sign decides where a coordinate within a float32 rounding
    of an integer lands (nearest ceil/floor)."""
    f = np.float32
    width = f(scale) * f(n_in)
    return f(f(n_in) / f(2)) * (f(1) - f(n_out) / width)


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


# ---- GridSample ------------------------------------------------------------------------------
# Coordinates are computed in float32 as the ONNX reference and onnxruntime do (the sampled
# index is decided on them); reflections in float64; values accumulate in float64.
_GS_MODES = {"nearest": 0, "bilinear": 1, "bicubic": 2}
_GS_PADDING = {"zeros": 0, "border": 1, "reflection": 2}


@njit(cache=True)
def _gs_reflect(x, lo, hi):
    """Reflect x back into [lo, hi] by the near border, as many times as needed."""
    rng = hi - lo
    if rng == 0.0:
        return lo
    if x < lo:
        dx = lo - x
        n = int(dx / rng)
        r = dx - n * rng
        return lo + r if n % 2 == 0 else hi - r
    if x > hi:
        dx = x - hi
        n = int(dx / rng)
        r = dx - n * rng
        return hi - r if n % 2 == 0 else lo + r
    return x


@njit(cache=True)
def _gs_pixel(img, iy, ix, padding, lo_y, hi_y, lo_x, hi_x):
    h, w = img.shape
    if padding == 0:
        if iy < 0 or iy >= h or ix < 0 or ix >= w:
            return 0.0
    elif padding == 1:
        iy = min(max(iy, 0), h - 1)
        ix = min(max(ix, 0), w - 1)
    else:
        if iy < 0 or iy >= h:
            iy = int(_gs_reflect(np.float64(iy), lo_y, hi_y))
        if ix < 0 or ix >= w:
            ix = int(_gs_reflect(np.float64(ix), lo_x, hi_x))
    return np.float64(img[iy, ix])


@njit(cache=True)
def _gs_cubic(t):
    # Keys' cubic convolution weights (A = -0.75) of the taps at -1, 0, 1, 2 from t in [0, 1)
    a = -0.75
    w = np.empty(4, np.float64)
    x = t + 1.0
    w[0] = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    w[1] = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    x = 1.0 - t
    w[2] = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    x = 2.0 - t
    w[3] = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return w


@njit(cache=True)
def _gs_coord(g, size, align, nearest, padding, lo, hi):
    """The float32 input coordinate of normalized g along an axis of `size`."""
    one, two = np.float32(1.0), np.float32(2.0)
    if align:
        f = (g + one) / two * np.float32(size - 1)
    else:
        f = ((g + one) * np.float32(size) - one) / two
    if nearest:
        f = np.float32(np.rint(f))
    if f < lo or f > hi:
        if padding == 1:
            f = np.float32(min(max(f, np.float32(0.0)), np.float32(size - 1)))
        elif padding == 2:
            f = np.float32(_gs_reflect(np.float64(f), lo, hi))
    return f


@njit(cache=True)
def _grid_sample(x, grid, out, mode, padding, align):
    n_, c_, h, w = x.shape
    _, ho, wo, _ = grid.shape
    lo_y, hi_y = (0.0, h - 1.0) if align else (-0.5, h - 0.5)
    lo_x, hi_x = (0.0, w - 1.0) if align else (-0.5, w - 0.5)
    for n in range(n_):
        for i in range(ho):
            for j in range(wo):
                fx = _gs_coord(np.float32(grid[n, i, j, 0]), w, align, mode == 0, padding,
                               lo_x, hi_x)
                fy = _gs_coord(np.float32(grid[n, i, j, 1]), h, align, mode == 0, padding,
                               lo_y, hi_y)
                for c in range(c_):
                    img = x[n, c]
                    if mode == 0:
                        v = _gs_pixel(img, int(fy), int(fx), padding, lo_y, hi_y, lo_x, hi_x)
                    else:
                        y0, x0 = int(math.floor(fy)), int(math.floor(fx))
                        ty, tx = np.float64(fy) - y0, np.float64(fx) - x0
                        if mode == 1:
                            wy = np.array([1.0 - ty, ty])
                            wx = np.array([1.0 - tx, tx])
                            first = 0
                        else:
                            wy, wx, first = _gs_cubic(ty), _gs_cubic(tx), -1
                        v = 0.0
                        for a in range(wy.size):
                            for b in range(wx.size):
                                v += wy[a] * wx[b] * _gs_pixel(img, y0 + first + a,
                                                               x0 + first + b, padding,
                                                               lo_y, hi_y, lo_x, hi_x)
                    out[n, c, i, j] = v


@kernel("GridSample")
def grid_sample(op, ins):
    x, grid = ins
    a = op.attrs
    out = np.empty(x.shape[:2] + grid.shape[1:3], np.float64)
    _grid_sample(contiguous(x), contiguous(grid, dtype=np.float32), out,
                 _GS_MODES[a["mode"]], _GS_PADDING[a["padding_mode"]], int(a["align_corners"]))
    return [out.astype(x.dtype)]


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
