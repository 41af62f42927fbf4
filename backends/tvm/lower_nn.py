"""TE lowerings of convolution, dense and normalization ops: Conv, ConvTranspose (N-D, groups,
dilations, asymmetric pads), Gemm, MatMul (numpy batched), BatchNormalization,
InstanceNormalization, LayerNormalization, LRN. Written directly in TE (not topi) so the
ONNX semantics (pads begins-then-ends, groups, broadcasting) are explicit."""
from __future__ import annotations

import math

from tvm import te, tirx

from edgecc.backends.tvm.schedule_conv import conv_tile
from edgecc.backends.tvm.schedule_conv_blocked import target_blocked_tile
from edgecc.backends.tvm.te_rules import bcast_index, block_size, const, lowering, out_type


def pad_tensor(x, begins, ends, value=0.0, name="pad", tail=0):
    """x zero-padded (constant `value`) on len(begins) axes: the trailing ones, or those
    before the last `tail` axes (the spatial axes of a blocked [N, C/c, H, W, c] tensor)."""
    if not any(begins) and not any(ends):
        return x
    lead = len(x.shape) - len(begins) - tail
    shape = [int(d) for d in x.shape]
    for i, (b, e) in enumerate(zip(begins, ends)):
        shape[lead + i] += b + e

    def body(*idx):
        conds, src = [], list(idx)
        for i, b in enumerate(begins):
            j = idx[lead + i]
            if b or ends[i]:
                conds += [j >= b, j < b + int(x.shape[lead + i])]
            src[lead + i] = j - b
        return tirx.if_then_else(tirx.all(*conds), x(*src), const(value, x.dtype))
    return te.compute(shape, body, name=name)


def _pad_deinterleave(x, begins, ends, s):
    """x zero-padded on its spatial axes, last axis split by phase: [N, C, ..., s, ceil(W/s)]
    with out[..., p, j] = padded[..., j*s + p] (named conv_pad: the Conv schedule keeps it)."""
    lead = len(x.shape) - len(begins)
    sizes = [int(d) for d in x.shape[lead:]]
    padded = [d + b + e for d, b, e in zip(sizes, begins, ends)]
    shape = list(x.shape[:lead]) + padded[:-1] + [s, -(-padded[-1] // s)]

    def body(*idx):
        sp = list(idx[lead:lead + len(sizes) - 1]) + [idx[-1] * s + idx[-2]]
        src = [j - b for j, b in zip(sp, begins)]
        conds = [tirx.all(v >= 0, v < d) for v, d in zip(src, sizes)]
        return tirx.if_then_else(tirx.all(*conds), x(*idx[:lead], *src), const(0.0, x.dtype))
    return te.compute(shape, body, name="conv_pad")


@lowering("Conv")
def _conv(op, ins, target):
    c = block_size(op)
    if c:
        return _conv_blocked(op, ins, c, target)
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    shape, dt = out_type(op)
    nsp = len(shape) - 2
    strides, dil = op.attrs["strides"], op.attrs["dilations"]
    pads, group = op.attrs["pads"], int(op.attrs["group"])
    cin_g = int(w.shape[1])
    m_g = shape[1] // group
    kshape = [int(k) for k in w.shape[2:]]
    rc = te.reduce_axis((0, cin_g), name="rc")
    rk = [te.reduce_axis((0, k), name=f"rk{i}") for i, k in enumerate(kshape)]
    s_w = strides[-1]
    # the row is computed over a width rounded up to whole vectors (extra input columns are
    # zero padding, the extra outputs are dropped): no odd-sized vector loads and stores
    # (not for a pointwise conv whose whole H*W plane splits into vectors: its schedule
    # vectorizes the flattened plane, schedule_conv.pointwise_plane)
    plane = shape[2] * shape[3] if nsp == 2 else 0
    # an input computed in the kernel (a fused layout conversion) is copied row by row into
    # the per-task padded rows: the reduction then reads contiguous rows, not a gather
    computed = not isinstance(x.op, te.PlaceholderOp)
    flat = (nsp == 2 and kshape == [1, 1] and list(strides) == [1, 1] and not any(pads)
            and plane % 8 == 0 and not computed)
    # (nor for a depthwise conv: one load per FMA, so padded columns cost as much as real
    # ones - measured 1.2-1.4x slower on ppocr_det's 20- and 160-wide depthwise layers)
    lanes = target.lanes()
    wide = _vector_width(shape[-1], lanes) if nsp == 2 and not flat and cin_g > 1 \
        else shape[-1]
    if _flat_padded_plane(nsp, kshape, strides, pads, plane, shape[-1], cin_g, lanes) \
            and not flat:
        return _conv_flat_padded(x, w, b, shape, group, rc, lanes)
    ends = list(pads[nsp:])
    ends[-1] += (wide - shape[-1]) * s_w
    if nsp >= 2 and s_w > 1 and dil[-1] == 1:
        # strided along W: pad into a [.., H, phase, W/s] layout so that the taps of
        # consecutive output columns are contiguous (vector loads instead of gathers)
        xq = _pad_deinterleave(x, pads[:nsp], ends, s_w)

        def load(n, c, sp):
            return xq(n, c, *sp[:-1], sp[-1] % s_w, sp[-1] // s_w)
    else:
        xp = pad_tensor(x, pads[:nsp], ends, name="conv_pad")
        if xp is x and computed:
            xp = te.compute(x.shape, lambda *i: x(*i), name="conv_pad")

        def load(n, c, sp):
            return xp(n, c, *sp)

    wp, mi = _pack_weights(w, shape[1], plane if flat else wide, target) \
        if nsp == 2 and group == 1 \
        else (None, 1)

    def weight(m, rk):
        return w(m, rc, *rk) if wp is None else wp(m // mi, rc, *rk, m % mi)

    def body(n, m, *o):
        c = rc if group == 1 else (m // m_g) * cin_g + rc
        sp = [o[i] * strides[i] + rk[i] * dil[i] for i in range(nsp)]
        if nsp >= 2 and s_w > 1 and dil[-1] == 1:    # o*s + k = (o + k//s)*s + k%s
            sp[-1] = (o[-1] + rk[-1] // s_w) * s_w + rk[-1] % s_w
        return te.sum(load(n, c, sp) * weight(m, rk), axis=[rc] + rk)
    # a depthwise conv's tasks take bands of rows; the schedule sizes them from these
    attrs = {"edgecc.row_stride": strides[0], "edgecc.row_window": (kshape[0] - 1) * dil[0] + 1} \
        if nsp == 2 and cin_g == 1 and group == shape[1] else None
    y = te.compute(list(shape[:-1]) + [wide], body, name="conv", attrs=attrs)
    if b is not None:
        return [te.compute(shape, lambda n, m, *o: y(n, m, *o) + b[m], name="conv_bias")]
    if wide != shape[-1]:
        return [te.compute(shape, lambda *i: y(*i), name="conv_crop")]
    return [y]


def _conv_blocked(op, ins, c, target):
    """Conv in the blocked layout (layout_contract: X [N, C/c, H, W, c], W [M/c, C/c, kh, kw,
    c, c] or depthwise [M/c, 1, kh, kw, 1, c], Y [N, M/c, OH, OW, c]).

    Stages (the schedule, schedule_conv_blocked.py, finds them by name): conv_pad (the
    zero-padded input, only when there are pads), conv_blocked (the reduction; for
    group 1 over rc, ry, rx, ri = input channel block, kernel row, column, lane), then
    conv_bias or conv_crop. The reduction is computed over a width rounded up to whole
    register tiles (blocked_tile; extra input columns are zeros, the extra outputs are
    dropped by the last stage): no tail tile. conv_blocked is annotated with what the
    schedule needs and cannot read from the loops: the real output width ("edgecc.width",
    to pick the same tile), the row stride and the rows one output row reads
    ("edgecc.row_stride", "edgecc.row_window", to size the per-task padded input)."""
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    shape, dt = out_type(op)
    n, mb, oh, ow, _ = shape
    (sh, sw), (dh, dw) = op.attrs["strides"], op.attrs["dilations"]
    pads = op.attrs["pads"]
    depthwise = int(op.attrs["group"]) != 1
    kh, kw = (int(d) for d in w.shape[2:4])
    t, _ = target_blocked_tile(target, mb, ow, c, depthwise,
                               math.prod(int(d) for d in w.shape[1:]) * 4)
    wide = -(-ow // t) * t
    xp = pad_tensor(x, pads[:2], [pads[2], pads[3] + (wide - ow) * sw], name="conv_pad",
                    tail=1)
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    if depthwise:
        def body(n_, m, h, j, o):
            return te.sum(xp[n_, m, h * sh + ry * dh, j * sw + rx * dw, o] *
                          w[m, 0, ry, rx, 0, o], axis=[ry, rx])
    else:
        rc = te.reduce_axis((0, int(x.shape[1])), name="rc")
        ri = te.reduce_axis((0, int(x.shape[-1])), name="ri")  # c, or 1 for an NCHW input

        def body(n_, m, h, j, o):
            return te.sum(xp[n_, rc, h * sh + ry * dh, j * sw + rx * dw, ri] *
                          w[m, rc, ry, rx, ri, o], axis=[rc, ry, rx, ri])
    y = te.compute([n, mb, oh, wide, c], body, name="conv_blocked",
                   attrs={"edgecc.width": ow, "edgecc.row_stride": sh,
                          "edgecc.row_window": (kh - 1) * dh + 1})
    if b is not None:
        return [te.compute(shape, lambda n_, m, h, j, o: y[n_, m, h, j, o] + b[m * c + o],
                           name="conv_bias")]
    if wide != ow:
        return [te.compute(shape, lambda *i: y(*i), name="conv_crop")]
    return [y]


L1_SETS, LINE_BYTES = 64, 64    # a 4 KiB way: x86 L1D and Cortex-A L1D alike
MAX_STREAMS_PER_SET = 8          # L1 associativity (8-12) less room for the input lines


def _pack_weights(w, out_channels: int, width: int, target):
    """(packed weights [M/MI, C, kh, kw, MI], MI) when the conv schedule's MI weight rows,
    read in step, would map to too few L1 sets (row length a multiple of 4 KiB: 1x1 convs
    with 1024+ input channels; measured 3x slower), else (None, 1). Packed, the MI
    broadcasts of a reduction step share one cache line. The copy is a stage of the kernel
    (named conv_wpack; the schedule materializes it), about 1/HW of the conv's work."""
    import math
    from collections import Counter

    mi, _ = conv_tile(out_channels, width, target.lanes(), target.vector_registers)
    row = 4 * math.prod(int(d) for d in w.shape[1:])
    per_set = Counter((i * row // LINE_BYTES) % L1_SETS for i in range(mi))
    if mi == 1 or max(per_set.values()) <= MAX_STREAMS_PER_SET:
        return None, 1
    shape = [out_channels // mi] + [int(d) for d in w.shape[1:]] + [mi]
    return te.compute(shape, lambda mo, *r: w(mo * mi + r[-1], *r[:-1]),
                      name="conv_wpack"), mi


def _flat_padded_plane(nsp, kshape, strides, pads, plane, width, cin_g, lanes) -> bool:
    """A 1x1 stride-1 conv whose rows, rounded up, still fill less than a vector and whose
    H*W plane is not whole vectors but spans at least two: it runs on the flattened plane
    padded to whole vectors (shufflenet's 7x7 group convs: 49 -> 64 columns, 77% of the lanes
    used, instead of 7-wide rows in 8-lane vectors, 44% on AVX-512: 85 -> 57 us). Its
    epilogue then runs as a loop nest of its own: on 14-wide rows (16-lane vectors already)
    that cost more than the 6% of padding it saved."""
    return (nsp == 2 and kshape == [1, 1] and list(strides) == [1, 1] and not any(pads)
            and cin_g > 1 and _vector_width(width, lanes) < lanes and plane % lanes
            and plane >= 2 * lanes)


def _conv_flat_padded(x, w, b, shape, group, rc, lanes):
    """Conv (see _flat_padded_plane) as [N, C, 1, P] -> [N, M, 1, P] on the plane padded to
    P columns (stage conv_pad, zeros beyond H*W), cropped back to [N, M, H, W]."""
    n, m, h, wd = shape
    plane = h * wd
    cols = -(-plane // lanes) * lanes
    cin_g, m_g = int(w.shape[1]), m // group
    xp = te.compute([n, int(x.shape[1]), 1, cols], lambda n_, c, _, p: tirx.if_then_else(
        p < plane, x[n_, c, p // wd, p % wd], tirx.const(0.0, x.dtype)), name="conv_pad")
    kh = te.reduce_axis((0, 1), name="rk0")
    kw = te.reduce_axis((0, 1), name="rk1")

    def body(n_, m_, r, p):
        c = rc if group == 1 else (m_ // m_g) * cin_g + rc
        return te.sum(xp[n_, c, r + kh, p + kw] * w[m_, rc, kh, kw], axis=[rc, kh, kw])
    y = te.compute([n, m, 1, cols], body, name="conv")
    if b is not None:
        return [te.compute(shape, lambda n_, m_, i, j: y(n_, m_, 0, i * wd + j) + b[m_],
                           name="conv_bias")]
    return [te.compute(shape, lambda n_, m_, i, j: y(n_, m_, 0, i * wd + j), name="conv_crop")]


def _vector_width(width: int, lanes: int) -> int:
    """`width` rounded up to a multiple of min(8, f32 lanes of the target), unless it is a
    multiple of the lanes already or narrower than half a vector."""
    q = min(8, lanes)
    if width % lanes == 0 or width % q == 0 or 2 * width < q:
        return width
    return -(-width // q) * q


@lowering("ConvTranspose")
def _conv_transpose(op, ins, target):
    # y[n, g*Mg+m, o] = sum_{c<Cg, k} x[n, g*Cg+c, i] * w[g*Cg+c, m, k]  where o = i*s - pb + k*d
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    shape, dt = out_type(op)
    nsp = len(shape) - 2
    strides, dil, pads = op.attrs["strides"], op.attrs["dilations"], op.attrs["pads"]
    group = int(op.attrs["group"])
    c_g = int(x.shape[1]) // group
    m_g = int(w.shape[1])
    kshape = [int(k) for k in w.shape[2:]]
    isz = [int(d) for d in x.shape[2:]]
    rc = te.reduce_axis((0, c_g), name="rc")
    if (all(d == 1 for d in dil) and kshape == list(strides) and not any(pads)
            and all(shape[2 + i] == isz[i] * strides[i] for i in range(nsp))):
        y = _conv_transpose_phases(x, w, shape, rc, group, c_g, m_g, kshape)
        if b is None:
            return [y]
        return [te.compute(shape, lambda n, m, *o: y(n, m, *o) + b[m], name="convT_bias")]
    # With dilation 1 only the taps k = (o + pad) mod s + s*j (j < ceil(K/s)) reach output o:
    # reduce over j instead of k (s^nsp times fewer terms, no modulo test in the inner loop);
    # the skipped terms are exact zeros, so the sum is unchanged.
    phase = [strides[i] > 1 and dil[i] == 1 for i in range(nsp)]
    rk = [te.reduce_axis((0, -(-k // strides[i]) if phase[i] else k), name=f"rk{i}")
          for i, k in enumerate(kshape)]

    def body(n, m, *o):
        c = rc if group == 1 else (m // m_g) * c_g + rc
        conds, src, taps = [], [], []
        for i in range(nsp):
            s = strides[i]
            if phase[i]:
                k = tirx.floormod(o[i] + pads[i], s) + rk[i] * s
                if kshape[i] % s:
                    conds.append(k < kshape[i])
                q = tirx.floordiv(o[i] + pads[i] - k, s)
            else:
                k = rk[i]
                t = o[i] + pads[i] - k * dil[i]
                if s > 1:
                    conds.append(tirx.floormod(t, s) == 0)
                q = tirx.floordiv(t, s) if s > 1 else t
            conds += [q >= 0, q < isz[i]]
            src.append(q)
            taps.append(tirx.min(k, kshape[i] - 1) if phase[i] and kshape[i] % s else k)
        v = x(n, c, *src) * w(c, m % m_g if group > 1 else m, *taps)
        return te.sum(tirx.if_then_else(tirx.all(*conds), v, const(0, dt)), axis=[rc] + rk)
    y = te.compute(shape, body, name="convT")
    if b is None:
        return [y]
    return [te.compute(shape, lambda n, m, *o: y(n, m, *o) + b[m], name="convT_bias")]


def _conv_transpose_phases(x, w, shape, rc, group, c_g, m_g, kshape):
    """ConvTranspose with kernel == stride, no pads (upsampling): every output pixel gets
    exactly one tap, so it is a 1x1 convolution per kernel phase (a GEMM over channels on
    contiguous input rows) followed by an interleaving copy. Same terms, same order."""
    nsp = len(kshape)
    zshape = list(shape[:2]) + kshape + [int(d) for d in x.shape[2:]]

    def phase(n, m, *rq):
        c = rc if group == 1 else (m // m_g) * c_g + rc
        return te.sum(x(n, c, *rq[nsp:]) * w(c, m % m_g if group > 1 else m, *rq[:nsp]),
                      axis=rc)
    z = te.compute(zshape, phase, name="convT_phase")
    return te.compute(shape, lambda n, m, *o: z(n, m, *[o[i] % kshape[i] for i in range(nsp)],
                                                 *[o[i] // kshape[i] for i in range(nsp)]),
                      name="convT")


@lowering("Gemm")
def _gemm(op, ins, target):
    a, bm, c = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    shape, dt = out_type(op)
    alpha, beta = float(op.attrs["alpha"]), float(op.attrs["beta"])
    ta, tb = int(op.attrs["transA"]), int(op.attrs["transB"])
    kdim = int(a.shape[0] if ta else a.shape[1])
    k = te.reduce_axis((0, kdim), name="k")
    y = te.compute(shape, lambda i, j: te.sum((a[k, i] if ta else a[i, k]) *
                                              (bm[j, k] if tb else bm[k, j]), axis=k),
                   name="gemm")
    if c is None or beta == 0.0:
        if alpha == 1.0:
            return [y]
        return [te.compute(shape, lambda i, j: y[i, j] * const(alpha, dt), name="gemm_alpha")]

    def epi(i, j):
        v = y[i, j] if alpha == 1.0 else y[i, j] * const(alpha, dt)
        cv = c(*bcast_index(c, (i, j)))
        return v + (cv if beta == 1.0 else cv * const(beta, dt))
    return [te.compute(shape, epi, name="gemm_bias")]


@lowering("MatMul")
def _matmul(op, ins, target):
    a, b = ins
    shape, dt = out_type(op)
    ra, rb = len(a.shape), len(b.shape)
    kdim = int(a.shape[-1])
    k = te.reduce_axis((0, kdim), name="k")
    # Output layout: batch..., [M if ra >= 2], [N if rb >= 2]
    nb = len(shape) - (ra >= 2) - (rb >= 2)

    def body(*idx):
        batch = idx[:nb]
        rest = list(idx[nb:])
        i = rest.pop(0) if ra >= 2 else None
        j = rest.pop(0) if rb >= 2 else None
        ai = (bcast_index_partial(a, batch, ra - 2) + [i, k]) if ra >= 2 else [k]
        bi = (bcast_index_partial(b, batch, rb - 2) + [k, j]) if rb >= 2 else [k]
        return te.sum(a(*ai) * b(*bi), axis=k)
    return [te.compute(shape, body, name="matmul")]


def bcast_index_partial(t, batch, nbatch):
    """Indices of t's leading `nbatch` (batch) dims broadcast against the output batch idx."""
    lead = len(batch) - nbatch
    return [0 if int(t.shape[j]) == 1 else batch[lead + j] for j in range(nbatch)]


@lowering("BatchNormalization")
def _batch_norm(op, ins, target):
    x, scale, bias, mean, var = ins[:5]
    eps = float(op.attrs["epsilon"])
    dt = x.dtype
    return [te.compute(x.shape, lambda n, c, *s: (x(n, c, *s) - mean[c]) *
                       (scale[c] / tirx.sqrt(var[c] + const(eps, dt))) + bias[c],
                       name="batchnorm")]


def _mean_var(x, axes, name):
    """(mean, var) reduced over `axes` of x with kept dims (population variance)."""
    keep_shape = [1 if i in axes else int(d) for i, d in enumerate(x.shape)]
    count = 1
    for a in axes:
        count *= int(x.shape[a])

    def reduced_index(idx, raxes):
        it = iter(raxes)
        return [next(it) if i in axes else idx[i] for i in range(len(x.shape))]

    r1 = [te.reduce_axis((0, int(x.shape[a])), name=f"r{a}") for a in axes]
    s = te.compute(keep_shape, lambda *i: te.sum(x(*reduced_index(i, r1)), axis=r1),
                   name=f"{name}_sum")
    mean = te.compute(keep_shape, lambda *i: s(*i) / const(count, x.dtype), name=f"{name}_mean")
    r2 = [te.reduce_axis((0, int(x.shape[a])), name=f"q{a}") for a in axes]

    def sq(*i):
        d = x(*reduced_index(i, r2)) - mean(*i)
        return te.sum(d * d, axis=r2)
    ss = te.compute(keep_shape, sq, name=f"{name}_sqsum")
    var = te.compute(keep_shape, lambda *i: ss(*i) / const(count, x.dtype), name=f"{name}_var")
    return mean, var


def _kept(idx, axes):
    return [0 if i in axes else v for i, v in enumerate(idx)]


@lowering("InstanceNormalization")
def _instance_norm(op, ins, target):
    x, scale, bias = ins[:3]
    axes = list(range(2, len(x.shape)))
    mean, var = _mean_var(x, axes, "inorm")
    eps = const(float(op.attrs["epsilon"]), x.dtype)

    def body(*i):
        k = _kept(i, axes)
        return (x(*i) - mean(*k)) / tirx.sqrt(var(*k) + eps) * scale[i[1]] + bias[i[1]]
    return [te.compute(x.shape, body, name="instnorm")]


@lowering("GroupNormalization")
def _group_norm(op, ins, target):
    x, scale, bias = ins[:3]
    g = int(op.attrs["num_groups"])
    c = int(x.shape[1])
    cg = c // g
    sp = [int(d) for d in x.shape[2:]]
    grouped = te.compute([int(x.shape[0]), g, cg] + sp,
                         lambda n, gi, ci, *s: x(n, gi * cg + ci, *s), name="gnorm_view")
    axes = list(range(2, 3 + len(sp)))
    mean, var = _mean_var(grouped, axes, "gnorm")
    eps = const(float(op.attrs["epsilon"]), x.dtype)
    per_group = int(scale.shape[0]) != c          # opset 18: [num_groups]

    def body(n, ch, *s):
        k = [n, ch // cg, 0] + [0] * len(sp)
        at = ch // cg if per_group else ch
        return (x(n, ch, *s) - mean(*k)) / tirx.sqrt(var(*k) + eps) * scale[at] + bias[at]
    return [te.compute(x.shape, body, name="groupnorm")]


@lowering("LayerNormalization")
def _layer_norm(op, ins, target):
    x, scale, bias = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    axis = int(op.attrs["axis"])
    axes = list(range(axis, len(x.shape)))
    mean, var = _mean_var(x, axes, "lnorm")
    eps = const(float(op.attrs["epsilon"]), x.dtype)

    def body(*i):
        k = _kept(i, axes)
        y = (x(*i) - mean(*k)) / tirx.sqrt(var(*k) + eps) * scale(*bcast_index(scale, i))
        return y + bias(*bcast_index(bias, i)) if bias is not None else y
    return [te.compute(x.shape, body, name="layernorm")]


@lowering("LRN")
def _lrn(op, ins, target):
    x = ins[0]
    size = int(op.attrs["size"])
    alpha, beta, bias = (float(op.attrs[k]) for k in ("alpha", "beta", "bias"))
    blk = block_size(op)                       # NCHW{c}c: channel cb*c + lane
    channels = int(x.shape[1]) * (blk or 1)
    lo = (size - 1) // 2                       # window [c - floor((s-1)/2), c + ceil((s-1)/2)]
    r = te.reduce_axis((0, size), name="r")
    dt = x.dtype

    def sqsum(n, c, *s):
        if blk:
            c, s = c * blk + s[-1], s[:-1]
        ch = c - lo + r
        src = tirx.max(tirx.min(ch, channels - 1), 0)
        v = x(n, src // blk, *s, src % blk) if blk else x(n, src, *s)
        return te.sum(tirx.if_then_else(tirx.all(ch >= 0, ch < channels), v * v, const(0, dt)),
                      axis=r)
    ss = te.compute(x.shape, sqsum, name="lrn_sqsum")
    return [te.compute(x.shape, lambda *i: x(*i) / tirx.power(
        const(bias, dt) + const(alpha / size, dt) * ss(*i), const(beta, dt)), name="lrn")]
