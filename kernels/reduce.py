"""Reductions (Reduce*), ArgMax/ArgMin, Softmax/LogSoftmax.

The reduced axes are moved last so every kernel sees a [outer, inner] matrix; float math
accumulates in float64. Integer ReduceSum/Prod/Max/Min (shape arithmetic) use exact numpy."""
from __future__ import annotations

import numpy as np
from numba import njit

from .registry import contiguous, compute_dtype, kernel

SUM, MEAN, MAX, MIN, PROD, L1, L2, SUMSQ, LOGSUMEXP, LOGSUM = range(10)
_CODES = {"ReduceSum": SUM, "ReduceMean": MEAN, "ReduceMax": MAX, "ReduceMin": MIN,
          "ReduceProd": PROD, "ReduceL1": L1, "ReduceL2": L2, "ReduceSumSquare": SUMSQ,
          "ReduceLogSumExp": LOGSUMEXP, "ReduceLogSum": LOGSUM}


@njit(cache=True, error_model="numpy")
def _reduce(x, out, code):
    outer, inner = x.shape
    for o in range(outer):
        if code == MAX or code == LOGSUMEXP:
            acc = -np.inf
            for i in range(inner):
                v = np.float64(x[o, i])
                if v > acc or v != v:
                    acc = v
            if code == LOGSUMEXP and inner > 0 and acc > -np.inf and acc == acc:
                s = 0.0
                for i in range(inner):
                    s += np.exp(np.float64(x[o, i]) - acc)
                acc = acc + np.log(s)
        elif code == MIN:
            acc = np.inf
            for i in range(inner):
                v = np.float64(x[o, i])
                if v < acc or v != v:
                    acc = v
        elif code == PROD:
            acc = 1.0
            for i in range(inner):
                acc *= np.float64(x[o, i])
        else:
            acc = 0.0
            for i in range(inner):
                v = np.float64(x[o, i])
                if code == L1:
                    acc += abs(v)
                elif code == L2 or code == SUMSQ:
                    acc += v * v
                else:
                    acc += v
            if code == MEAN:
                acc = acc / inner
            elif code == L2:
                acc = np.sqrt(acc)
            elif code == LOGSUM:
                acc = np.log(acc)
        out[o] = acc


def _to_rows(x: np.ndarray, axes) -> np.ndarray:
    """x with `axes` moved last, as a contiguous [outer, inner] matrix."""
    axes = sorted(set(axes))
    kept = [d for d in range(x.ndim) if d not in axes]
    outer = int(np.prod([x.shape[d] for d in kept], dtype=np.int64))
    inner = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    return contiguous(np.transpose(x, kept + axes)).reshape(outer, inner)


def _result_shape(x, axes, keepdims) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(x.shape))
    return tuple(n for d, n in enumerate(x.shape) if d not in axes)


_INT_REDUCE = {SUM: np.sum, PROD: np.prod, MAX: np.max, MIN: np.min,
               L1: lambda a, axis: np.sum(np.abs(a), axis=axis),
               SUMSQ: lambda a, axis: np.sum(a * a, axis=axis)}


def _register_reduce():
    for kind, code in _CODES.items():
        def run(op, ins, code=code):
            x, axes, keepdims = ins[0], list(op.attrs["axes"]), op.attrs["keepdims"]
            if not axes:  # nothing to reduce (ONNX noop_with_empty_axes)
                return [x]
            shape = _result_shape(x, axes, keepdims)
            if x.dtype.kind != "f":
                if code not in _INT_REDUCE:
                    raise TypeError(f"{op.kind} on a {x.dtype} tensor")
                if x.size == 0 and code in (MAX, MIN):
                    info = np.iinfo(x.dtype)
                    return [np.full(shape, info.min if code == MAX else info.max, x.dtype)]
                r = _INT_REDUCE[code](x, axis=tuple(axes))
                return [np.asarray(r).astype(x.dtype).reshape(shape)]
            rows = _to_rows(x.astype(compute_dtype(x), copy=False), axes)
            out = np.empty(rows.shape[0], np.float64)
            _reduce(rows, out, code)
            return [out.astype(x.dtype).reshape(shape)]
        kernel(kind)(run)


_register_reduce()


@kernel("ArgMax", "ArgMin")
def _arg(op, ins):
    x, axis = ins[0], op.attrs["axis"]
    fn = np.argmax if op.kind == "ArgMax" else np.argmin
    if op.attrs["select_last_index"]:
        idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
    else:
        idx = fn(x, axis=axis)
    shape = _result_shape(x, [axis], op.attrs["keepdims"])
    return [idx.astype(np.int64).reshape(shape)]


@kernel("TopK")
def _topk(op, ins):
    """A stable sort of order-preserving keys: equal values keep index order; NaN is larger
    than any number."""
    x, axis, k = ins[0], op.attrs["axis"], op.attrs["k"]
    moved = np.moveaxis(x, axis, -1)
    if x.dtype.kind == "f":
        keys = moved.astype(np.float64)
        nan = np.isnan(keys)
        keys = np.where(nan, 0.0, -keys if op.attrs["largest"] else keys)
        first = ~nan if op.attrs["largest"] else nan       # primary key: where NaN goes
        order = np.lexsort((keys, first), axis=-1) if moved.size else \
            np.zeros(moved.shape, np.int64)
    else:
        u = moved.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)   # signed order
        keys = ~u if op.attrs["largest"] else u
        order = np.argsort(keys, axis=-1, kind="stable")
    order = order[..., :k]
    values = np.take_along_axis(moved, order, -1)
    return [contiguous(np.moveaxis(values, -1, axis)),
            contiguous(np.moveaxis(order.astype(np.int64), -1, axis))]


@njit(cache=True)
def _softmax(x, out, log):
    outer, inner = x.shape
    e = np.empty(inner, np.float64)
    for o in range(outer):
        m = -np.inf
        for i in range(inner):
            v = np.float64(x[o, i])
            if v > m or v != v:
                m = v
        s = 0.0
        for i in range(inner):
            e[i] = np.exp(np.float64(x[o, i]) - m)
            s += e[i]
        for i in range(inner):
            out[o, i] = (np.float64(x[o, i]) - m - np.log(s)) if log else e[i] / s


@kernel("Softmax", "LogSoftmax")
def _softmax_kernel(op, ins):
    x, axis = ins[0], op.attrs["axis"]
    moved = np.moveaxis(x.astype(compute_dtype(x), copy=False), axis, -1)
    rows = contiguous(moved).reshape(-1, x.shape[axis] if x.ndim else 1)
    out = np.empty(rows.shape, np.float64)
    _softmax(rows, out, op.kind == "LogSoftmax")
    return [contiguous(np.moveaxis(out.reshape(moved.shape), -1, axis)).astype(x.dtype)]
