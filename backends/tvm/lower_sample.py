"""TE lowerings of resampling: Resize (nearest/linear/cubic, every ONNX coordinate transform,
antialias, tf_crop_and_resize) and GridSample. The arithmetic is the reference's
(kernels/resize.py): source coordinates in float32, the same operations in the same order."""
from __future__ import annotations

import math

import numpy as np
from tvm import te, tirx

from edgecc.errors import ModelError
from edgecc.kernels.resize import symmetric_offset

from edgecc.backends.tvm.te_rules import const, etype, lowering, out_type


# ---- Resize ----------------------------------------------------------------------------------
F32 = "float32"


def _f(v):
    return const(float(v), F32)


def _source_coord(mode, o, scale, n_in, n_out, roi=None):
    """ONNX coordinate transform: output index o (int expr) -> source coordinate (f32).
    Like the ONNX reference, the transforms see the fractional output length scale * n_in."""
    x = o.astype(F32)
    width = scale * n_in
    if mode == "half_pixel":
        return (x + _f(0.5)) / _f(scale) - _f(0.5)
    if mode == "pytorch_half_pixel":
        return (x + _f(0.5)) / _f(scale) - _f(0.5) if width != 1 else _f(-0.5)
    if mode == "align_corners":
        return x * _f((n_in - 1) / (width - 1)) if width != 1 else _f(0)
    if mode == "asymmetric":
        return x / _f(scale)
    if mode == "tf_half_pixel_for_nn":
        return (x + _f(0.5)) / _f(scale)
    if mode == "half_pixel_symmetric":
        return _f(symmetric_offset(scale, n_in, n_out)) + (x + _f(0.5)) / _f(scale) - _f(0.5)
    if mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            return _f((end - start) * (n_in - 1) / 2) + _f(start * (n_in - 1))
        # the product rounded to float32 before the add, as numpy does: a fused multiply-add
        # would move coordinates that land on a pixel (the product is exact in float64)
        step = float(np.float32((end - start) * (n_in - 1) / (width - 1)))
        p = (x.astype("float64") * const(step, "float64")).astype(F32)
        return p + _f(start * (n_in - 1))
    return None


def _clamp(i, n):
    return tirx.max(tirx.min(i, n - 1), 0)


def _outside(x, n_in):
    """tf_crop_and_resize: the source coordinate lies outside the input."""
    return tirx.any(x < _f(0.0), x > _f(n_in - 1))


def _keys(d, a):
    """Keys' cubic convolution kernel at distance d (f32 expr; 0 from 2 on)."""
    ad = tirx.abs(d)
    a_c, one = _f(a), _f(1.0)
    near = ((a_c + 2) * ad - (a_c + 3)) * ad * ad + one
    far = ((a_c * ad - 5 * a_c) * ad + 8 * a_c) * ad - 4 * a_c
    return tirx.Select(ad <= one, near, tirx.Select(ad < _f(2.0), far, _f(0.0)))


def _axis_taps(op, o, n_in, n_out, scale, roi):
    """([(source index, weight expr)], source coordinate) for one resized axis."""
    mode = op.attrs["mode"]
    x = _source_coord(op.attrs["coordinate_transformation_mode"], o, scale, n_in, n_out, roi)
    if mode == "nearest":
        nm = op.attrs["nearest_mode"]
        half = _f(0.5)
        r = {"round_prefer_floor": lambda v: tirx.ceil(v - half),
             "round_prefer_ceil": lambda v: tirx.floor(v + half),
             "floor": tirx.floor, "ceil": tirx.ceil}[nm](x)
        return [(_clamp(r.astype("int32"), n_in), None)], x
    one = _f(1.0)
    if mode == "linear":
        xc = tirx.max(tirx.min(x, _f(n_in - 1)), _f(0.0))
        x0f = tirx.floor(xc)
        t = xc - x0f
        x0 = x0f.astype("int32")
        return [(_clamp(x0, n_in), one - t), (_clamp(x0 + 1, n_in), t)], x
    # cubic: taps at x0-1 .. x0+2, weights from the distance to x
    x0f = tirx.floor(x)
    t = x - x0f
    x0 = x0f.astype("int32")
    a = float(op.attrs["cubic_coeff_a"])
    taps = [(x0 + k, _keys(t - _f(k), a)) for k in (-1, 0, 1, 2)]
    if int(op.attrs["exclude_outside"]):
        zero = _f(0.0)
        taps = [(i, tirx.Select(tirx.all(i >= 0, i < n_in), wt, zero)) for i, wt in taps]
        total = taps[0][1] + taps[1][1] + taps[2][1] + taps[3][1]
        taps = [(i, wt / total) for i, wt in taps]
    return [(_clamp(i, n_in), wt) for i, wt in taps], x


def _to_dtype(v, dt):
    """The f32 result in the output type: integers are rounded (half to even) and saturated,
    as the reference does."""
    if etype(v) == dt:
        return v
    if dt.startswith(("int", "uint")):
        lo, hi = tirx.min_value(dt).value, tirx.max_value(dt).value
        v = tirx.max(tirx.min(tirx.nearbyint(v.astype(F32)), _f(hi)), _f(lo))
    return v.astype(dt)


class _Axis:
    """A resized axis in the antialias form: n taps (a reduce axis), tap r of output o at
    input base(o) + start + r, with weight w(o, r); the weights of an output sum to norm(o)."""

    def __init__(self, op, n_in, n_out, scale, roi):
        self.op, self.n_in, self.n_out, self.scale, self.roi = op, n_in, n_out, scale, roi
        self.cubic = op.attrs["mode"] == "cubic"
        self.s = min(scale, 1.0)                  # antialias only stretches when downscaling
        support = 2.0 if self.cubic else 1.0
        self.start = int(math.floor(-support / self.s) + 1)
        self.n = 2 - 2 * self.start

    def coord(self, o):
        return _source_coord(self.op.attrs["coordinate_transformation_mode"], o, self.scale,
                             self.n_in, self.n_out, self.roi)

    def base_ratio(self, o):
        """ONNX prefers the left neighbour: an integer coordinate k is base k-1, ratio 1."""
        x = self.coord(o)
        fl = tirx.floor(x)
        exact = x == fl
        base = tirx.Select(exact, fl - _f(1.0), fl).astype("int32")
        return base, tirx.Select(exact, _f(1.0), x - fl)

    def tap(self, o, r):
        """(input index, unclamped index, raw weight) of tap r."""
        base, ratio = self.base_ratio(o)
        j = base + self.start + r
        dist = ((r + self.start).astype(F32) - ratio) * _f(self.s)
        if self.cubic:
            w = _keys(dist, float(self.op.attrs["cubic_coeff_a"]))
        else:
            w = tirx.max(_f(1.0) - tirx.abs(dist), _f(0.0))
        if int(self.op.attrs["exclude_outside"]):
            w = tirx.Select(tirx.all(j >= 0, j < self.n_in), w, _f(0.0))
        return _clamp(j, self.n_in), w


def _resize_antialias(op, x, shape, dt, moved, dims, scales, rois):
    """Every resized axis a reduction over its (1/scale wider) taps; the weights of each axis
    are normalized to sum to 1 (a table per axis, computed once per output position)."""
    axes = {a: _Axis(op, dims[a], shape[a], scales[a], rois[a]) for a in moved}
    def norm_table(a, ax):
        k = te.reduce_axis((0, ax.n), name=f"k{a}")
        return te.compute((shape[a],), lambda o: te.sum(ax.tap(o, k)[1], axis=k),
                          name=f"resize_norm{a}")
    norms = {a: norm_table(a, ax) for a, ax in axes.items()}
    rs = {a: te.reduce_axis((0, ax.n), name=f"r{a}") for a, ax in axes.items()}

    def acc(*o):
        idx, weight = list(o), None
        for a, ax in axes.items():
            idx[a], w = ax.tap(o[a], rs[a])
            weight = w if weight is None else weight * w
        return te.sum(x(*idx).astype(F32) * weight, axis=list(rs.values()))
    total = te.compute(shape, acc, name="resize_taps")

    def out(*o):
        v = total(*o)
        for a in moved:
            norm = norms[a](o[a])
            v = v / tirx.Select(norm == _f(0.0), _f(1.0), norm)
        return _extrapolate(op, v, [(axes[a].coord(o[a]), dims[a]) for a in moved
                                    if rois[a] is not None], dt)
    return te.compute(shape, out, name="resize")


def _extrapolate(op, v, coords, dt):
    """tf_crop_and_resize: extrapolation_value where any source coordinate is outside."""
    v = _to_dtype(v, dt)
    if not coords:
        return v
    outside = tirx.any(*[_outside(x, n) for x, n in coords])
    return tirx.Select(outside, _to_dtype(_f(op.attrs["extrapolation_value"]), dt), v)


@lowering("Resize")
def _resize(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    ctm = op.attrs["coordinate_transformation_mode"]
    rank = len(shape)
    roi = op.attrs.get("roi") if ctm == "tf_crop_and_resize" else None
    rois = [(float(roi[a]), float(roi[a + rank])) if roi else None for a in range(rank)]
    if _source_coord(ctm, tirx.const(0, "int32"), 1.0, 2, 2, (0.0, 1.0)) is None:
        raise ModelError(f"{op.describe()}: unknown Resize coordinate_transformation_mode "
                         f"'{ctm}'")
    scales = [float(s) for s in op.attrs["scales"]]
    dims = [int(d) for d in x.shape]
    moved = [i for i in range(rank) if dims[i] != shape[i] or scales[i] != 1.0
             or rois[i] not in (None, (0.0, 1.0))]
    if int(op.attrs.get("antialias", 0)) and op.attrs["mode"] != "nearest" and \
            any(scales[a] < 1.0 for a in moved):
        return [_resize_antialias(op, x, shape, dt, moved, dims, scales, rois)]

    def body(*o):
        per_axis, coords = [], []
        for a in moved:
            taps, xa = _axis_taps(op, o[a], dims[a], shape[a], scales[a], rois[a])
            per_axis.append(taps)
            if rois[a] is not None:
                coords.append((xa, dims[a]))
        total = None
        for combo in _product(per_axis):
            idx = list(o)
            weight = None
            for a, (i, wt) in zip(moved, combo):
                idx[a] = i
                if wt is not None:
                    weight = wt if weight is None else weight * wt
            v = x(*idx)
            if weight is not None:
                v = v.astype(F32) * weight
            total = v if total is None else total + v
        return _extrapolate(op, total, coords, dt)
    return [te.compute(shape, body, name="resize")]


def _product(lists):
    if not lists:
        return [()]
    return [(a,) + rest for a in lists[0] for rest in _product(lists[1:])]


# ---- GridSample ------------------------------------------------------------------------------
# The same arithmetic as the reference (kernels/resize.py): coordinates in float32, the
# reflections in float64, Keys' cubic weights; values accumulate in float32.

def _gs_reflect(v, lo: float, hi: float):
    """v (float64) reflected into [lo, hi] by the near border, as often as needed."""
    f64 = "float64"
    span = hi - lo
    if span == 0.0:
        return const(lo, f64)

    def folded(dx, near, far):
        n = tirx.floor(dx / const(span, f64))
        r = dx - n * const(span, f64)
        even = tirx.floormod(n.astype("int64"), const(2, "int64")) == const(0, "int64")
        return tirx.Select(even, near(r), far(r))
    below = folded(const(lo, f64) - v, lambda r: const(lo, f64) + r,
                   lambda r: const(hi, f64) - r)
    above = folded(v - const(hi, f64), lambda r: const(hi, f64) - r,
                   lambda r: const(lo, f64) + r)
    return tirx.Select(v < const(lo, f64), below, tirx.Select(v > const(hi, f64), above, v))


def _gs_coord(g, size: int, align: bool, nearest: bool, padding: str, lo: float, hi: float):
    f32 = "float32"
    one, two = const(1.0, f32), const(2.0, f32)
    f = (g + one) / two * const(size - 1, f32) if align else \
        ((g + one) * const(size, f32) - one) / two
    if nearest:
        f = tirx.nearbyint(f)
    out = tirx.any(f < const(lo, f32), f > const(hi, f32))
    if padding == "border":
        return tirx.Select(out, tirx.min(tirx.max(f, const(0.0, f32)), const(size - 1, f32)), f)
    if padding == "reflection":
        return tirx.Select(out, _gs_reflect(f.astype("float64"), lo, hi).astype(f32), f)
    return f


def _gs_cubic(t, k):
    """Keys' cubic weight (A = -0.75) of tap k (0..3, at offsets -1..2) for t in [0, 1)."""
    a = -0.75

    def c(v):
        return const(v, "float32")
    x = t + c(1.0)
    w0 = ((c(a) * x - c(5 * a)) * x + c(8 * a)) * x - c(4 * a)
    w1 = ((c(a + 2) * t - c(a + 3)) * t * t) + c(1.0)
    x = c(1.0) - t
    w2 = ((c(a + 2) * x - c(a + 3)) * x * x) + c(1.0)
    x = c(2.0) - t
    w3 = ((c(a) * x - c(5 * a)) * x + c(8 * a)) * x - c(4 * a)
    return tirx.Select(k == 0, w0, tirx.Select(k == 1, w1, tirx.Select(k == 2, w2, w3)))


@lowering("GridSample")
def _grid_sample(op, ins, target):
    """A reduction over the taps (1, 2x2 or 4x4): each tap's index and weight are written
    once, as functions of the tap number, so the expression does not grow with the taps."""
    x, grid = ins
    shape, dt = out_type(op)
    h, w = int(x.shape[2]), int(x.shape[3])
    mode, padding = op.attrs["mode"], op.attrs["padding_mode"]
    align = bool(op.attrs["align_corners"])
    lo_y, hi_y = (0.0, h - 1.0) if align else (-0.5, h - 0.5)
    lo_x, hi_x = (0.0, w - 1.0) if align else (-0.5, w - 0.5)
    i32, f32 = "int32", "float32"
    taps = {"nearest": 1, "bilinear": 2, "bicubic": 4}[mode]
    first = -1 if mode == "bicubic" else 0
    ry = te.reduce_axis((0, taps), name="ty")
    rx = te.reduce_axis((0, taps), name="tx")

    def index(i, size, lo, hi):
        """(index to read, whether the tap is inside) for padding_mode."""
        inside = tirx.all(i >= const(0, i32), i < const(size, i32))
        if padding == "zeros":
            return tirx.min(tirx.max(i, const(0, i32)), const(size - 1, i32)), inside
        if padding == "border":
            return tirx.min(tirx.max(i, const(0, i32)), const(size - 1, i32)), None
        r = _gs_reflect(i.astype("float64"), lo, hi).astype(i32)     # truncates, as int()
        return tirx.Select(inside, i, r), None

    def weight(f, k):
        if mode == "nearest":
            return const(1.0, f32)
        t = f - tirx.floor(f)
        if mode == "bilinear":
            return tirx.Select(k == 0, const(1.0, f32) - t, t)
        return _gs_cubic(t, k)

    def body(n, c, i, j):
        g = [grid[n, i, j, k].astype(f32) for k in (0, 1)]
        fx = _gs_coord(g[0], w, align, mode == "nearest", padding, lo_x, hi_x)
        fy = _gs_coord(g[1], h, align, mode == "nearest", padding, lo_y, hi_y)
        if mode == "nearest":
            iy, ix = fy.astype(i32), fx.astype(i32)
        else:
            iy = tirx.floor(fy).astype(i32) + ry + const(first, i32)
            ix = tirx.floor(fx).astype(i32) + rx + const(first, i32)
        (yy, in_y), (xx, in_x) = index(iy, h, lo_y, hi_y), index(ix, w, lo_x, hi_x)
        v = x[n, c, yy, xx].astype(f32)
        if in_y is not None:
            v = tirx.Select(tirx.all(in_y, in_x), v, const(0.0, f32))
        return te.sum(weight(fy, ry) * weight(fx, rx) * v, axis=[ry, rx])
    y = te.compute(shape, body, name="grid_sample")
    if dt == f32:
        return [y]
    return [te.compute(shape, lambda *i: y(*i).astype(dt), name="grid_sample_cast")]
