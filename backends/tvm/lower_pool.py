"""TE lowerings of pooling, reductions, arg-reductions and softmax: MaxPool, AveragePool
(ceil_mode windows clipped, count_include_pad as onnxruntime), GlobalAverage/MaxPool,
Reduce*, ArgMax/ArgMin (first or last index on ties), Softmax, LogSoftmax. The pools also
take the blocked layout NCHW{c}c ([N, C/c, H, W, c]: the lane axis rides along)."""
from __future__ import annotations

import math

from tvm import te, tirx

from edgecc.backends.tvm import vector_math
from edgecc.backends.tvm.te_rules import block_size, const, is_float_dtype, lowering, out_type


def lowest(dtype):
    return const(-math.inf, dtype) if is_float_dtype(dtype) else tirx.min_value(dtype)


def highest(dtype):
    return const(math.inf, dtype) if is_float_dtype(dtype) else tirx.max_value(dtype)


_MAX = te.comm_reducer(lambda a, b: tirx.max(a, b), lambda t: lowest(t), name="max")
_MIN = te.comm_reducer(lambda a, b: tirx.min(a, b), lambda t: highest(t), name="min")


def rmax(v, axis):
    """Max reduction whose identity is -inf for floats (te.max starts at the lowest finite
    value, so a window of -inf would give -3.4e38)."""
    return _MAX(v, axis=axis)


def rmin(v, axis):
    return _MIN(v, axis=axis)


def pool_windows(op, x, shape, tail=0):
    """Reduce axes and, per output index, source positions + validity for a pooling window
    (the spatial axes are those after N, C and before the last `tail` axes)."""
    nsp = len(shape) - 2 - tail
    kshape = op.attrs["kernel_shape"]
    strides, pads = op.attrs["strides"], op.attrs["pads"]
    dil = op.attrs.get("dilations") or [1] * nsp
    isz = [int(d) for d in x.shape[2:2 + nsp]]
    rk = [te.reduce_axis((0, k), name=f"rk{i}") for i, k in enumerate(kshape)]

    def positions(o):
        src, conds = [], []
        for i in range(nsp):
            p = o[i] * strides[i] - pads[i] + rk[i] * dil[i]
            src.append(tirx.max(tirx.min(p, isz[i] - 1), 0))
            conds += [p >= 0, p < isz[i]]
        return src, tirx.all(*conds)
    return rk, positions


def _layout(op):
    """(tail axes, stage name suffix): the lane axis of a blocked NCHW{c}c pool (its
    stages are named *_blocked: schedule_pool's blocked rule finds them)."""
    return (1, "_blocked") if block_size(op) else (0, "")


@lowering("MaxPool")
def _max_pool(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    tail, sfx = _layout(op)
    rk, positions = pool_windows(op, x, shape, tail)
    nsp = len(rk)

    def body(n, c, *o):
        src, ok = positions(o[:nsp])
        return rmax(tirx.if_then_else(ok, x(n, c, *src, *o[nsp:]), lowest(dt)), axis=rk)
    return [te.compute(shape, body, name="maxpool" + sfx)]


def window_count(op, o, isz):
    """The divisor of an average pool at output index o (spatial part): the taps inside the
    input, or with count_include_pad inside the padded extent (ceil_mode overhang
    excluded); an int when it does not depend on o."""
    nsp = len(isz)
    kshape, strides, pads = op.attrs["kernel_shape"], op.attrs["strides"], op.attrs["pads"]
    dil = op.attrs.get("dilations") or [1] * nsp
    include_pad = int(op.attrs["count_include_pad"])

    def taps_inside(start, i, lo, hi):
        """Taps k in [0, K) with lo <= start + k*d < hi (the first tap index at or past a
        bound b is ceil((b - start) / d))."""
        K, d = kshape[i], dil[i]
        if d == 1:
            return tirx.min(start + K, hi) - tirx.max(start, lo)
        first = tirx.max(tirx.floordiv(lo - start + d - 1, d), 0)
        end = tirx.min(tirx.floordiv(hi - start + d - 1, d), K)
        return tirx.max(end - first, 0)

    count = 1
    for i in range(nsp):
        start = o[i] * strides[i] - pads[i]
        if include_pad:
            n_i = taps_inside(start, i, -pads[i], isz[i] + pads[nsp + i])
        else:
            n_i = taps_inside(start, i, 0, isz[i])
        count = count * n_i
    return count


@lowering("AveragePool")
def _avg_pool(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    tail, sfx = _layout(op)
    rk, positions = pool_windows(op, x, shape, tail)
    nsp = len(rk)
    isz = [int(d) for d in x.shape[2:2 + nsp]]

    def total(n, c, *o):
        src, ok = positions(o[:nsp])
        return te.sum(tirx.if_then_else(ok, x(n, c, *src, *o[nsp:]), const(0, dt)), axis=rk)
    s = te.compute(shape, total, name="avgpool_sum" + sfx)

    def divide(n, c, *o):
        count = window_count(op, o[:nsp], isz)
        return s(n, c, *o) / count.astype(dt) if not isinstance(count, int) else \
            s(n, c, *o) / const(count, dt)
    return [te.compute(shape, divide, name="avgpool" + sfx)]


def _reduce_map(x, axes, keepdims, raxes):
    """Source index of x for an output index: reduced axes take the reduce variables."""
    def src(idx):
        it_r, it_o, out = iter(raxes), iter(idx), []
        for i in range(len(x.shape)):
            if i in axes:
                out.append(next(it_r))
                if keepdims:
                    next(it_o)
            else:
                out.append(next(it_o))
        return out
    return src


def reduce_compute(op, x, axes, keepdims, combine, name, pre=None, shape=None):
    shape = shape if shape is not None else out_type(op)[0]
    raxes = [te.reduce_axis((0, int(x.shape[a])), name=f"r{a}") for a in axes]
    src = _reduce_map(x, axes, keepdims, raxes)

    def body(*idx):
        v = x(*src(idx))
        return combine(pre(v, idx) if pre else v, raxes)
    return te.compute(shape, body, name=name)


def _prod_reducer():
    return te.comm_reducer(lambda a, b: a * b, lambda t: const(1, t), name="prod")


def _count(x, axes):
    return math.prod(int(x.shape[a]) for a in axes)


@lowering("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
          "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp")
def _reduce(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    axes, keep = list(op.attrs["axes"]), int(op.attrs["keepdims"])
    kind = op.kind[len("Reduce"):]
    sum_ = lambda v, r: te.sum(v, axis=r)
    if kind == "Sum":
        return [reduce_compute(op, x, axes, keep, sum_, "reduce_sum")]
    if kind == "Mean":
        s = reduce_compute(op, x, axes, keep, sum_, "reduce_sum")
        n = _count(x, axes)
        return [te.compute(shape, lambda *i: s(*i) / const(n, dt), name="reduce_mean")]
    if kind == "Max":
        return [reduce_compute(op, x, axes, keep, lambda v, r: rmax(v, axis=r), "reduce_max")]
    if kind == "Min":
        return [reduce_compute(op, x, axes, keep, lambda v, r: rmin(v, axis=r), "reduce_min")]
    if kind == "Prod":
        prod = _prod_reducer()
        return [reduce_compute(op, x, axes, keep, lambda v, r: prod(v, axis=r), "reduce_prod")]
    if kind == "L1":
        return [reduce_compute(op, x, axes, keep, sum_, "reduce_l1",
                               pre=lambda v, i: tirx.abs(v))]
    if kind == "SumSquare":
        return [reduce_compute(op, x, axes, keep, sum_, "reduce_sumsq", pre=lambda v, i: v * v)]
    if kind == "L2":
        s = reduce_compute(op, x, axes, keep, sum_, "reduce_sumsq", pre=lambda v, i: v * v)
        if is_float_dtype(dt):
            return [te.compute(shape, lambda *i: tirx.sqrt(s(*i)), name="reduce_l2")]
        return [te.compute(shape, lambda *i: tirx.sqrt(s(*i).astype("float64")).astype(dt),
                           name="reduce_l2")]
    # LogSumExp, stabilized: m + log(sum(exp(x - m)))
    m = reduce_compute(op, x, axes, keep, lambda v, r: rmax(v, axis=r), "lse_max")
    s = reduce_compute(op, x, axes, keep, sum_, "lse_sum",
                       pre=lambda v, i: vector_math.exp(v - m(*i)))
    return [te.compute(shape, lambda *i: m(*i) + tirx.log(s(*i)), name="reduce_lse")]


@lowering("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    tail, sfx = _layout(op)
    axes = list(range(2, len(x.shape) - tail))
    if op.kind == "GlobalMaxPool":
        return [reduce_compute(op, x, axes, 1, lambda v, r: rmax(v, axis=r), "gmaxpool" + sfx)]
    s = reduce_compute(op, x, axes, 1, lambda v, r: te.sum(v, axis=r), "gavgpool_sum" + sfx)
    n = _count(x, axes)
    return [te.compute(shape, lambda *i: s(*i) / const(n, dt), name="gavgpool" + sfx)]


@lowering("ArgMax", "ArgMin")
def _arg_reduce(op, ins, target):
    x = ins[0]
    axis, keep = int(op.attrs["axis"]), int(op.attrs["keepdims"])
    last = int(op.attrs["select_last_index"])
    is_max = op.kind == "ArgMax"

    def better(v1, v0):
        return v1 > v0 if is_max else v1 < v0

    def fcombine(a, b):          # a = accumulator (idx, val), b = new element
        i0, v0 = a
        i1, v1 = b
        tie_wins = (i1 > i0) if last else (i1 < i0)
        take = tirx.Or(better(v1, v0), tirx.And(v1 == v0, tie_wins))
        return tirx.Select(take, i1, i0), tirx.Select(take, v1, v0)

    def fidentity(t0, t1):
        start = const(-1, t0) if last else tirx.max_value(t0)
        return start, (lowest(t1) if is_max else highest(t1))
    reducer = te.comm_reducer(fcombine, fidentity, name="argreduce")
    r = te.reduce_axis((0, int(x.shape[axis])), name="r")
    src = _reduce_map(x, [axis], keep, [r])
    shape, out_dt = out_type(op)
    in_shape = [int(d) for d in x.shape]
    red_shape = [1 if i == axis else d for i, d in enumerate(in_shape)] if keep else \
        [d for i, d in enumerate(in_shape) if i != axis]
    pair = te.compute(red_shape, lambda *i: reducer((r.var, x(*src(i))), axis=r),
                      name="argreduce")
    return [te.compute(shape, lambda *i: pair[0](*i).astype(out_dt), name=op.kind.lower())]


@lowering("TopK")
def _topk(op, ins, target):
    """rank[i] = how many elements go before element i (better value, or equal and earlier;
    NaN larger than every number); result r is the element of rank r. O(n^2) along the
    axis, no sort: exact and the same order as the reference."""
    x = ins[0]
    axis, largest = int(op.attrs["axis"]), int(op.attrs["largest"])
    n = int(x.shape[axis])
    shape, dt = out_type(op)
    floats = is_float_dtype(x.dtype)

    def before(vj, vi, j, i):
        better = vj > vi if largest else vj < vi
        ahead = tirx.Or(better, tirx.And(vj == vi, j < i))
        if not floats:
            return ahead
        nj, ni = tirx.isnan(vj), tirx.isnan(vi)
        if largest:      # NaN first
            return tirx.Select(nj, tirx.Or(tirx.Not(ni), j < i), tirx.And(tirx.Not(ni), ahead))
        return tirx.Select(nj, tirx.And(ni, j < i), tirx.Or(ni, ahead))

    j = te.reduce_axis((0, n), name="j")

    def rank_of(*idx):
        src = list(idx)
        src[axis] = j
        return te.sum(tirx.Select(before(x(*src), x(*idx), j, idx[axis]),
                                  const(1, "int32"), const(0, "int32")), axis=j)
    rank = te.compute([int(d) for d in x.shape], rank_of, name="topk_rank")

    def pick(value, out_dt, name):
        i = te.reduce_axis((0, n), name="i")

        def body(*idx):
            src = list(idx)
            src[axis] = i
            return te.sum(tirx.Select(rank(*src) == idx[axis], value(src, i),
                                      const(0, out_dt)), axis=i)
        return te.compute(shape, body, name=name)
    values = pick(lambda src, i: x(*src), dt, "topk_values")
    indices = pick(lambda src, i: i.astype("int64"), "int64", "topk_indices")
    return [values, indices]


@lowering("Softmax", "LogSoftmax")
def _softmax(op, ins, target):
    x = ins[0]
    axis = int(op.attrs["axis"])
    rank = len(x.shape)
    keep_shape = [1 if i == axis else int(d) for i, d in enumerate(x.shape)]
    m = reduce_compute(op, x, [axis], 1, lambda v, r: rmax(v, axis=r), "softmax_max",
                       shape=keep_shape)

    def kept(i):
        return [0 if a == axis else i[a] for a in range(rank)]
    s = reduce_compute(op, x, [axis], 1, lambda v, r: te.sum(v, axis=r), "softmax_sum",
                       pre=lambda v, i: vector_math.exp(v - m(*i)), shape=keep_shape)
    if op.kind == "Softmax":
        return [te.compute(x.shape, lambda *i: vector_math.exp(x(*i) - m(*kept(i))) / s(*kept(i)),
                           name="softmax")]
    return [te.compute(x.shape, lambda *i: x(*i) - m(*kept(i)) - tirx.log(s(*kept(i))),
                       name="logsoftmax")]
