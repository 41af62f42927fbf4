"""TE lowerings of data movement: Transpose, Expand, Concat, Split, Slice, Gather,
GatherElements, Tile, Pad (constant/reflect/edge/wrap, negative pads), DepthToSpace,
SpaceToDepth, LayoutTransform (NCHW <-> NCHW{c}c). Resize and GridSample: lower_sample.py."""
from __future__ import annotations

from tvm import te, tirx


from edgecc.backends.tvm.te_rules import bcast_index, const, is_float_dtype, lowering, out_type
from edgecc.quant import stored_value


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
    value = stored_value(float(op.attrs["value"]), op.inputs[0].type)   # quantized X: q(value)

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
