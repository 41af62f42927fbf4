"""Pooling, reductions, arg-reductions and softmax."""
from __future__ import annotations

from ..ir import TensorType
from ..opdef import REQUIRED, OpRuleError, opdef
from ._util import (attr_axes, attr_axis, attr_int, need_dtype, need_float,
                    need_numeric, need_rank, operand)
from .canonical import fill
from .layout import NCHW, layout_attr, need_blocked
from .spatial import (canon_window, check_positive, pool_output_shape, window_attrs,
                      window_flops)

POOL = ("pool", "layout_aware")

_POOL_TYPES = ("f16", "f32", "f64", "i8", "u8")


@opdef("MaxPool", ["X"], {"kernel_shape": REQUIRED, "strides": None, "pads": None,
                          "dilations": None, "ceil_mode": 0, "layout": NCHW},
       traits=POOL + ("quant_transparent",), canonicalize=canon_window("MaxPool"),
       flops=window_flops)
def _max_pool(op):
    """MaxPool over the spatial axes of X[N,C,*] (or [N,C/c,H,W,c]); one output (no indices)."""
    return [_pool("MaxPool", op)]


def _average_pool_onnx(op, opset):
    """ONNX gave AveragePool dilations in opset 19: undilated pools are written without."""
    attrs = dict(op.attrs)
    if all(d == 1 for d in attrs["dilations"]):
        del attrs["dilations"]
        return 1, attrs
    return 19, attrs


@opdef("AveragePool", ["X"], {"kernel_shape": REQUIRED, "strides": None, "pads": None,
                              "dilations": None, "ceil_mode": 0, "count_include_pad": 0,
                              "layout": NCHW},
       traits=POOL, canonicalize=canon_window("AveragePool"), flops=window_flops,
       onnx_form=_average_pool_onnx)
def _average_pool(op):
    """AveragePool over the spatial axes of X[N,C,*] (or [N,C/c,H,W,c]); the divisor counts
    the taps inside the input (count_include_pad: inside the padded extent)."""
    attr_int(op, "count_include_pad", 0, 1)
    return [_pool("AveragePool", op)]


def _pool(kind, op):
    x = operand(op, 0)
    if kind == "MaxPool":
        need_dtype(kind, "X", x, _POOL_TYPES, "float, i8 or u8")
    else:
        need_float(kind, "X", x)
    c = layout_attr(op)
    if c is None:
        need_rank(kind, "X", x, min_rank=3)
        k = x.rank - 2
    else:   # NCHW{c}c: spatial axes 2, 3; the lanes axis 4 is carried through
        need_blocked(kind, "X", x, c)
        k = 2
    a = window_attrs(op, k)
    a["ceil_mode"] = attr_int(op, "ceil_mode", 0, 1)
    pads = a["pads"]
    for i, kern in enumerate(a["kernel_shape"]):
        if max(pads[i], pads[k + i]) >= kern:   # onnxruntime's rule: no all-padding windows
            raise OpRuleError(f"{kind}: pads={pads} must be smaller than the kernel size {kern} "
                              f"on spatial axis {i}")
    out = pool_output_shape(x.shape[2:2 + k], a["kernel_shape"], a["strides"], pads,
                            a.get("dilations"), a["ceil_mode"])
    check_positive(kind, out, x.shape, a)
    return TensorType(x.dtype, x.shape[:2] + out + x.shape[2 + k:])


def _global_pool(kind):
    def infer(op):
        x = operand(op, 0)
        if kind == "GlobalMaxPool":
            need_dtype(kind, "X", x, _POOL_TYPES, "float, i8 or u8")
        else:
            need_float(kind, "X", x)
        c = layout_attr(op)
        if c is not None:
            need_blocked(kind, "X", x, c)
            return [TensorType(x.dtype, x.shape[:2] + (1, 1, c))]
        need_rank(kind, "X", x, min_rank=3)
        return [TensorType(x.dtype, x.shape[:2] + (1,) * (x.rank - 2))]
    infer.__doc__ = (f"{kind}(X[N,C,*]) -> [N,C,1,...]; "
                     f"layout NCHW{{c}}c: [N,C/c,H,W,c] -> [N,C/c,1,1,c].")
    return infer


for _kind in ("GlobalAveragePool", "GlobalMaxPool"):
    opdef(_kind, ["X"], {"layout": NCHW}, onnx="same",
          traits=POOL + ("reduction",) + (("quant_transparent",) if "Max" in _kind else ()))(
        _global_pool(_kind))


# ---- reductions -----------------------------------------------------------------------------

REDUCE_KINDS = tuple(f"Reduce{s}" for s in (
    "Mean", "Max", "Min", "Sum", "Prod", "L1", "L2", "SumSquare", "LogSumExp"))


def _all_axes(a, types, n):
    x = types[0] if types else None
    if x is not None and not a.get("axes"):    # None or []: ONNX reduces over all axes
        a["axes"] = list(range(x.rank))


def _last_axis(a, types, n):
    if types and types[0] is not None:
        fill(a, "axis", types[0].rank - 1)


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce(kind):
    def infer(op):
        x = operand(op, 0)
        need_numeric(kind, "X", x)
        axes = attr_axes(op, "axes", x.rank)
        keep = attr_int(op, "keepdims", 0, 1)
        return [TensorType(x.dtype, reduced_shape(x.shape, axes, keep))]
    infer.__doc__ = f"{kind} over `axes` (sorted, non-negative; canonical form lists them all)."
    return infer


for _kind in REDUCE_KINDS:
    opdef(_kind, ["X"], {"axes": None, "keepdims": 1}, traits=("reduction",),
          canonicalize=_all_axes)(_reduce(_kind))


def _arg(kind):
    def infer(op):
        x = operand(op, 0)
        need_numeric(kind, "X", x)
        axis = attr_axis(op, "axis", x.rank)
        keep = attr_int(op, "keepdims", 0, 1)
        attr_int(op, "select_last_index", 0, 1)
        return [TensorType("i64", reduced_shape(x.shape, [axis], keep))]
    infer.__doc__ = f"{kind} along `axis` -> i64 indices."
    return infer


for _kind in ("ArgMax", "ArgMin"):
    opdef(_kind, ["X"], {"axis": 0, "keepdims": 1, "select_last_index": 0})(_arg(_kind))


def _canon_topk(a, types, n):
    x = types[0] if types else None
    if x is not None and isinstance(a.get("axis"), int) and -x.rank <= a["axis"] < 0:
        a["axis"] += x.rank


@opdef("TopK", ["X"], {"k": REQUIRED, "axis": -1, "largest": 1, "sorted": 1}, outputs=2,
       canonicalize=_canon_topk, onnx="same", onnx_consts={1: "k"})
def _topk(op):
    """TopK(X) -> (values, i64 indices): the k largest (largest=1) or smallest elements along
    `axis`, always sorted (best first); equal values in index order; NaN counts as larger than any
    number (first when largest, last otherwise), as onnxruntime and the ONNX reference."""
    x = operand(op, 0)
    need_numeric("TopK", "X", x)
    axis = attr_axis(op, "axis", x.rank)
    k = attr_int(op, "k", 0, x.shape[axis])
    attr_int(op, "largest", 0, 1)
    attr_int(op, "sorted", 0, 1)
    shape = x.shape[:axis] + (k,) + x.shape[axis + 1:]
    return [TensorType(x.dtype, shape), TensorType("i64", shape)]


def _softmax(kind):
    def infer(op):
        x = operand(op, 0)
        need_float(kind, "X", x)
        attr_axis(op, "axis", x.rank)
        return [x]
    infer.__doc__ = (f"{kind} along one axis (opset-13 meaning; the importer rewrites older "
                     f"forms, which flattened trailing axes, with Reshapes).")
    return infer


for _kind in ("Softmax", "LogSoftmax"):
    opdef(_kind, ["X"], {"axis": None}, traits=("reduction",), canonicalize=_last_axis)(
        _softmax(_kind))
