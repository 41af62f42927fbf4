"""TE lowerings of data movement: Transpose, Expand, Concat, Split, Slice, Gather,
GatherElements, Tile, Pad (constant/reflect/edge/wrap, negative pads), Resize
(nearest/linear/cubic, ONNX coordinate transforms), GridSample, DepthToSpace, SpaceToDepth,
LayoutTransform (NCHW <-> NCHW{c}c)."""
from __future__ import annotations

from tvm import te, tirx

from edgecc.errors import ModelError

from edgecc.backends.tvm.te_rules import bcast_index, const, etype, is_float_dtype, lowering, out_type


@lowering("Transpose")
def _transpose(op, ins, target):
    x = ins[0]
    perm = op.attrs["perm"]
    shape, _ = out_type(op)

    def body(*o):
        src = [None] * len(perm)
        for j, p in enumerate(perm):
            src[p] = o[j]
        return x(*src)
    return [te.compute(shape, body, name="transpose")]


@lowering("LayoutTransform")
def _layout_transform(op, ins, target):
    # blocked[n, cb, h, w, i] = nchw[n, cb*c + i, h, w]  (schedule_conv_blocked has its rule)
    from edgecc.ops.layout import layout_of
    x = ins[0]
    shape, _ = out_type(op)
    c = layout_of(op, "dst_layout").block
    if c:
        return [te.compute(shape, lambda n, cb, h, w, i: x[n, cb * c + i, h, w],
                           name="layout_transform")]
    c = int(x.shape[-1])
    return [te.compute(shape, lambda n, ch, h, w: x[n, ch // c, h, w, ch % c],
                       name="layout_transform")]


@lowering("Expand")
def _expand(op, ins, target):
    x = ins[0]
    shape, _ = out_type(op)
    return [te.compute(shape, lambda *o: x(*bcast_index(x, o)), name="expand")]


@lowering("Concat")
def _concat(op, ins, target):
    xs = [t for t in ins if t is not None]
    axis = int(op.attrs["axis"])
    shape, _ = out_type(op)
    offsets, off = [], 0
    for t in xs:
        offsets.append(off)
        off += int(t.shape[axis])

    # j < off1 ? x0 : (j < off2 ? x1 : ...)
    def chain(*o):
        j = o[axis]
        expr = None
        for k in range(len(xs) - 1, -1, -1):
            idx = list(o)
            idx[axis] = j - offsets[k]
            if expr is None:
                expr = xs[k](*idx)
            else:
                idx[axis] = tirx.min(j - offsets[k], int(xs[k].shape[axis]) - 1)
                expr = tirx.if_then_else(j < offsets[k + 1], xs[k](*idx), expr)
        return expr
    return [te.compute(shape, chain, name="concat")]


@lowering("Split")
def _split(op, ins, target):
    x = ins[0]
    axis = int(op.attrs["axis"])
    outs, off = [], 0
    for i, v in enumerate(op.outputs):
        outs.append(te.compute(v.type.shape, _shifted(x, axis, off), name=f"split{i}"))
        off += v.type.shape[axis]
    return outs


def _shifted(x, axis, start):
    def body(*o):
        idx = list(o)
        idx[axis] = o[axis] + start
        return x(*idx)
    return body


@lowering("Slice")
def _slice(op, ins, target):
    x = ins[0]
    shape, _ = out_type(op)
    starts, axes, steps = op.attrs["starts"], op.attrs["axes"], op.attrs["steps"]
    how = {int(a): (int(s), int(st)) for a, s, st in zip(axes, starts, steps)}

    def body(*o):
        return x(*[o[i] * how[i][1] + how[i][0] if i in how else o[i]
                   for i in range(len(o))])
    return [te.compute(shape, body, name="slice")]


@lowering("Gather")
def _gather(op, ins, target):
    data, indices = ins
    axis = int(op.attrs["axis"])
    shape, _ = out_type(op)
    n = int(data.shape[axis])
    ri = len(indices.shape)

    def body(*o):
        k = indices(*o[axis:axis + ri])
        k = tirx.Select(k < 0, k + n, k).astype("int32")
        k = tirx.max(tirx.min(k, n - 1), 0)
        return data(*o[:axis], k, *o[axis + ri:])
    return [te.compute(shape, body, name="gather")]


@lowering("GatherElements")
def _gather_elements(op, ins, target):
    data, indices = ins
    axis = int(op.attrs["axis"])
    n = int(data.shape[axis])

    def body(*o):
        k = indices(*o)
        k = tirx.Select(k < 0, k + n, k).astype("int32")
        idx = list(o)
        idx[axis] = tirx.max(tirx.min(k, n - 1), 0)
        return data(*idx)
    return [te.compute(indices.shape, body, name="gather_elements")]


@lowering("Tile")
def _tile(op, ins, target):
    x = ins[0]
    shape, _ = out_type(op)
    dims = [int(d) for d in x.shape]
    return [te.compute(shape, lambda *o: x(*[o[i] % d if d > 1 else 0
                                             for i, d in enumerate(dims)]), name="tile")]


@lowering("Pad")
def _pad(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    pads, mode = op.attrs["pads"], op.attrs["mode"]
    rank = len(shape)
    dims = [int(d) for d in x.shape]
    value = float(op.attrs["value"])

    def body(*o):
        src, conds = [], []
        for i in range(rank):
            p, n = o[i] - pads[i], dims[i]
            if mode == "constant":
                if pads[i] > 0 or pads[rank + i] > 0:
                    conds += [p >= 0, p < n]
                src.append(tirx.max(tirx.min(p, n - 1), 0) if conds else p)
            elif mode == "edge":
                src.append(tirx.max(tirx.min(p, n - 1), 0))
            elif mode == "wrap":
                src.append(tirx.floormod(p, n))
            else:   # reflect (no edge repeat): period 2(n-1)
                if n == 1:
                    src.append(0)
                    continue
                q = tirx.floormod(p, 2 * (n - 1))
                src.append(tirx.Select(q < n, q, 2 * (n - 1) - q))
        v = x(*src)
        if mode == "constant" and conds:
            v = tirx.if_then_else(tirx.all(*conds), v, const(value if is_float_dtype(dt)
                                                            else int(value), dt))
        return v
    return [te.compute(shape, body, name="pad")]


@lowering("DepthToSpace")
def _depth_to_space(op, ins, target):
    x = ins[0]
    b = int(op.attrs["blocksize"])
    shape, _ = out_type(op)
    c_out = shape[1]
    dcr = op.attrs["mode"] == "DCR"

    def body(n, c, h, w):
        bh, bw = h % b, w % b
        ch = (bh * b + bw) * c_out + c if dcr else c * b * b + bh * b + bw
        return x(n, ch, h // b, w // b)
    return [te.compute(shape, body, name="depth_to_space")]


@lowering("SpaceToDepth")
def _space_to_depth(op, ins, target):
    x = ins[0]
    b = int(op.attrs["blocksize"])
    shape, _ = out_type(op)
    c_in = int(x.shape[1])

    def body(n, c, h, w):
        blk = c // c_in
        return x(n, c % c_in, h * b + blk // b, w * b + blk % b)
    return [te.compute(shape, body, name="space_to_depth")]


# ---- Resize ----------------------------------------------------------------------------------

def _source_coord(mode, o, scale, n_in, n_out):
    """ONNX coordinate transform: output index o (int expr) -> source coordinate (f32).
    Like the ONNX reference, the transforms see the fractional output length scale * n_in."""
    f = lambda v: const(float(v), "float32")
    x = o.astype("float32")
    width = scale * n_in
    if mode == "half_pixel":
        return (x + f(0.5)) / f(scale) - f(0.5)
    if mode == "pytorch_half_pixel":
        return (x + f(0.5)) / f(scale) - f(0.5) if width != 1 else f(-0.5)
    if mode == "align_corners":
        return x * f((n_in - 1) / (width - 1)) if width != 1 else f(0)
    if mode == "asymmetric":
        return x / f(scale)
    if mode == "tf_half_pixel_for_nn":
        return (x + f(0.5)) / f(scale)
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return f(offset) + (x + f(0.5)) / f(scale) - f(0.5)
    return None


def _clamp(i, n):
    return tirx.max(tirx.min(i, n - 1), 0)


def _axis_taps(op, o, n_in, n_out, scale):
    """[(source index, weight expr)] for one resized axis."""
    mode = op.attrs["mode"]
    x = _source_coord(op.attrs["coordinate_transformation_mode"], o, scale, n_in, n_out)
    if mode == "nearest":
        nm = op.attrs["nearest_mode"]
        half = const(0.5, "float32")
        r = {"round_prefer_floor": lambda v: tirx.ceil(v - half),
             "round_prefer_ceil": lambda v: tirx.floor(v + half),
             "floor": tirx.floor, "ceil": tirx.ceil}[nm](x)
        return [(_clamp(r.astype("int32"), n_in), None)]
    x0f = tirx.floor(x)
    t = x - x0f
    x0 = x0f.astype("int32")
    one = const(1.0, "float32")
    if mode == "linear":
        xc = tirx.max(tirx.min(x, const(float(n_in - 1), "float32")), const(0.0, "float32"))
        x0f = tirx.floor(xc)
        t = xc - x0f
        x0 = x0f.astype("int32")
        return [(_clamp(x0, n_in), one - t), (_clamp(x0 + 1, n_in), t)]
    # cubic: taps at x0-1 .. x0+2, weights from the distance to x
    a = float(op.attrs["cubic_coeff_a"])
    a_c = const(a, "float32")

    def w(d):   # d: f32 expr, 0 <= |d| < 2
        ad = tirx.abs(d)
        near = ((a_c + 2) * ad - (a_c + 3)) * ad * ad + one
        far = ((a_c * ad - 5 * a_c) * ad + 8 * a_c) * ad - 4 * a_c
        return tirx.Select(ad <= one, near, far)
    taps = [(x0 + k, w(t - const(float(k), "float32"))) for k in (-1, 0, 1, 2)]
    if int(op.attrs["exclude_outside"]):
        zero = const(0.0, "float32")
        taps = [(i, tirx.Select(tirx.all(i >= 0, i < n_in), wt, zero)) for i, wt in taps]
        total = taps[0][1] + taps[1][1] + taps[2][1] + taps[3][1]
        taps = [(i, wt / total) for i, wt in taps]
    return [(_clamp(i, n_in), wt) for i, wt in taps]


@lowering("Resize")
def _resize(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    ctm = op.attrs["coordinate_transformation_mode"]
    if ctm == "tf_crop_and_resize":
        raise ModelError(f"{op.describe()}: Resize coordinate_transformation_mode="
                         f"'tf_crop_and_resize' is not supported by the TVM backend")
    if _source_coord(ctm, tirx.const(0, "int32"), 1.0, 2, 2) is None:
        raise ModelError(f"{op.describe()}: unknown Resize coordinate_transformation_mode "
                         f"'{ctm}'")
    scales = [float(s) for s in op.attrs["scales"]]
    dims = [int(d) for d in x.shape]
    moved = [i for i in range(len(shape)) if dims[i] != shape[i] or scales[i] != 1.0]

    def body(*o):
        per_axis = [_axis_taps(op, o[a], dims[a], shape[a], scales[a]) for a in moved]
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
                v = v.astype("float32") * weight
            total = v if total is None else total + v
        return total.astype(dt) if etype(total) != dt else total
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
