"""fold-qdq: a quantized model's DequantizeLinear → op → QuantizeLinear become int8 ops.

A QDQ model (or a QOperator one, imported as QDQ) says which values are int8 and with what
parameters; each op between dequantized operands and a quantized result is, by its
definition, its int8 form (compiler/ops/quant.py), up to one rounding step:
  DQ(x) → Conv(·, DQ(W), DQ(B)) [→ Relu / Clip] → Q     QConv (W i8, B i32 as stored)
  DQ(a) → MatMul / Gemm(·, DQ(W)) → Q                   QMatMul
  DQ(a), DQ(b) → Add / Sub / Mul → Q                    QAdd / QMul
  DQ(x) → GlobalAveragePool / AveragePool → Q           QGlobalAveragePool / QAveragePool
  DQ(x) → f(·, constants) → Q  (f elementwise)          QLookup (f's table)
  DQ(x) → BatchNormalization / f(·, c[C,1,1]) → Q       QLookup (a table per channel)
  DQ(x) → MaxPool / Reshape / Concat ... → Q            the same op on the int8 values, when
                                                        Q keeps x's parameters
  Q(DQ(x))                                              x, or QLookup (requantization)
Ops that fit none of these stay float between their DQ and Q. DequantizeLinear of constants
left over (weights of float ops) fold into float weights. No calibration is involved: the
model's own parameters are used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecc.ir import Graph, Op, QuantParams, TensorType, Value
from edgecc.ops import build_op, has_trait
from edgecc.pass_registry import register_pass
from edgecc.quant import conv_multipliers, dequantize, lookup_table, qrange, quantize

from ._int8_rewrite import lookup_form
from ._rewrite import prune


@register_pass
@dataclass(frozen=True)
class FoldQDQ:
    name = "fold-qdq"
    tolerance = 0.05        # integer arithmetic vs the literal float Q/DQ: rounding steps

    def run(self, graph: Graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if op not in graph.ops or op.kind in ("QuantizeLinear", "DequantizeLinear"):
                continue
            changed |= _fold(graph, op)
        for op in list(graph.ops):         # Q(DQ(x)): x itself, or a requantization table
            if op in graph.ops and op.kind == "QuantizeLinear":
                changed |= _requantize(graph, op)
        changed |= _fold_constant_dequantize(graph)
        if changed:
            prune(graph)
        return changed


def _dq_source(v: Value | None) -> Value | None:
    """x when v = DequantizeLinear(x) with x per tensor, else None."""
    if v is None or v.producer is None or v.producer.kind != "DequantizeLinear":
        return None
    return v.producer.inputs[0]


def _single_quantize(graph: Graph, v: Value, users) -> tuple[Op | None, Op | None]:
    """(Relu / Clip, QuantizeLinear) reading v alone, as v → [act] → Q; (None, None) if not."""
    readers = users.get(v, [])
    if len(readers) != 1 or v in graph.outputs:
        return None, None
    r = readers[0]
    act = None
    if r.kind == "Relu" or (r.kind == "Clip" and r.attrs["min"] <= 0 <= r.attrs["max"]):
        act = r
        readers = users.get(r.output, [])
        if len(readers) != 1 or r.output in graph.outputs:
            return None, None
        r = readers[0]
    if r.kind != "QuantizeLinear" or r.output.type.quant.axis is not None:
        return None, None
    return act, r


def _out_attrs(q: Op, act: Op | None) -> dict:
    t = q.output.type
    s, zp = t.quant.scale[0], t.quant.zero_point[0]
    a = {"scale": s, "zero_point": zp, "to": t.dtype}
    if act is not None:
        lo, hi = qrange(t.dtype)
        mn = 0.0 if act.kind == "Relu" else act.attrs["min"]
        mx = math.inf if act.kind == "Relu" else act.attrs["max"]
        a["clamp"] = [lo if mn == -math.inf else int(np.clip(round(mn / s) + zp, lo, hi)),
                      hi if mx == math.inf else int(np.clip(round(mx / s) + zp, lo, hi))]
    return a


def _replace(graph: Graph, first: Op, kind: str, ins, attrs, q: Op) -> bool:
    """Put `kind(ins){attrs}` where `first` was; its result takes over q's (the int8 value)."""
    for v in ins:                                    # new weights join the graph's params
        if v is not None and v.data is not None and v not in graph.params:
            v.name = graph.fresh_name(v.name)
            graph.params.append(v)
    try:
        new = build_op(kind, ins, attrs, name=first.name, out_names=[q.output.name + ".int8"])
    except Exception:
        return False                                 # the int8 form does not fit: keep float
    graph.ops.insert(graph.ops.index(first), new)
    graph.replace_all_uses(q.output, new.output)
    new.output.name = q.output.name
    q.output.name += ".dead"
    return True


def _fold(graph: Graph, op: Op) -> bool:
    users = graph.users()
    if len(op.outputs) != 1:
        return False
    act, q = _single_quantize(graph, op.output, users)
    if q is None:
        return False
    acts = [v for v in op.inputs if v is not None and v.data is None]
    if op.kind in ("Conv", "Gemm", "MatMul") and len(acts) > 1 and \
            (_dq_source(acts[1]) is not None and _dq_source(acts[1]).data is not None):
        acts = acts[:1]                              # DQ(W) (per channel) is the weight
    srcs = [_dq_source(v) for v in acts]
    if not srcs or any(s is None or s.type.quant is None or s.type.quant.axis is not None
                       for s in srcs):
        return False
    xq = srcs[0]
    oa = _out_attrs(q, act)
    if op.kind == "Conv" or (op.kind in ("Gemm", "MatMul") and len(acts) == 1):
        return _contraction(graph, op, xq, oa, q)
    if lookup_form(op):
        return _lookup(graph, op, xq, q, act)
    if _channel_lookup_form(op, xq):
        return _channel_lookup(graph, op, xq, q, act)
    if act is not None:
        return False
    if op.kind in ("Add", "Sub", "Mul") and len(srcs) == 2 and op.output.type.dtype == "f32":
        attrs = dict(oa)
        if op.kind != "Mul":
            attrs["b_sign"] = -1 if op.kind == "Sub" else 1
        return _replace(graph, op, "QMul" if op.kind == "Mul" else "QAdd", srcs, attrs, q)
    if op.kind == "GlobalAveragePool":
        return _replace(graph, op, "QGlobalAveragePool", [xq], oa, q)
    if op.kind == "AveragePool":
        keys = ("kernel_shape", "strides", "pads", "dilations", "ceil_mode", "count_include_pad")
        return _replace(graph, op, "QAveragePool", [xq], {**{k: op.attrs[k] for k in keys},
                                                          **oa}, q)
    if has_trait(op, "quant_transparent"):
        if all(s.type == srcs[0].type for s in srcs) and \
                q.output.type.quant == xq.type.quant and q.output.type.dtype == xq.type.dtype:
            ins = [(_dq_source(v) if v is not None and v.data is None else v)
                   for v in op.inputs]
            return _replace(graph, op, op.kind, ins, dict(op.attrs), q)
        return False
    return False


def _constant(v: Value) -> np.ndarray | None:
    """v's constant value: a weight, or DequantizeLinear of one (as the float op reads it)."""
    if v.data is not None:
        return np.asarray(v.data)
    src = _dq_source(v)
    if src is not None and src.data is not None:
        return dequantize(np.asarray(src.data), src.type.quant)
    return None


def _channel_lookup_form(op: Op, xq: Value) -> bool:
    """A float function of one activation and its channel (axis 1): BatchNormalization, or an
    elementwise op whose constants vary along the channel axis only."""
    x = op.inputs[0]
    if xq.type.rank < 2 or op.output.type.shape != xq.type.shape or \
            any(v is not x and v is not None and _constant(v) is None for v in op.inputs):
        return False
    if op.kind == "BatchNormalization":
        return True
    if not has_trait(op, "elementwise") or op.kind == "Cast":
        return False
    rank = xq.type.rank
    for v in op.inputs[1:]:
        if v is not None:
            shape = (1,) * (rank - v.type.rank) + tuple(v.type.shape)
            if len(shape) != rank or any(d != 1 for i, d in enumerate(shape) if i != 1):
                return False
    return True


def _channel_lookup(graph: Graph, op: Op, xq: Value, q: Op, act: Op | None) -> bool:
    """QLookup with a [C, 256] table: the float op run by its reference kernel on every
    int8 value of every channel (a [256, C, 1...] probe: the values along the batch axis)."""
    from edgecc.kernels import run_op
    rank, c = xq.type.rank, xq.type.shape[1]
    lo, hi = qrange(xq.type.dtype)
    real = dequantize(np.arange(lo, hi + 1).astype(xq.type.np_dtype), xq.type.quant)
    probe_shape = (256, c) + (1,) * (rank - 2)
    probe = np.ascontiguousarray(np.broadcast_to(
        np.asarray(real, np.float32).reshape((256,) + (1,) * (rank - 1)), probe_shape))
    pv = Value("probe", TensorType("f32", probe_shape))
    fop = build_op(op.kind, [pv if v is op.inputs[0] else v for v in op.inputs], dict(op.attrs),
                   name=op.name)
    ys = run_op(fop, [probe] + [None if v is None else _constant(v) for v in op.inputs[1:]])[0]
    t = q.output.type
    table = quantize(_activate(act, ys).reshape(256, c).T, t.quant, t.dtype)
    if np.all(table == table[:1]):
        table = table[0]                         # (constants the same in every channel)
    tv = Value(op.name + "_table", TensorType(t.dtype, table.shape),
               data=np.ascontiguousarray(table.astype(t.np_dtype)))
    return _replace(graph, op, "QLookup", [xq, tv], {"fn": op.kind, "scale": t.quant.scale[0],
                                                      "zero_point": t.quant.zero_point[0],
                                                      "to": t.dtype}, q)


def _contraction(graph: Graph, op: Op, xq: Value, oa: dict, q: Op) -> bool:
    """QConv / QMatMul from DQ(x), DQ(W) (per output channel or tensor, zero point 0),
    bias DQ(B int32) or float."""
    wv = op.inputs[1]
    wq = _dq_source(wv)
    if wq is None or wq.data is None or wq.type.dtype != "i8" or \
            any(z != 0 for z in wq.type.quant.zero_point):
        return False
    if op.kind == "Gemm" and (op.attrs["transA"] or op.attrs["alpha"] != 1.0):
        return False
    wdata = np.asarray(wq.data)
    wquant = wq.type.quant
    axis = 0 if op.kind == "Conv" else 1
    if op.kind == "Gemm" and op.attrs["transB"]:
        wdata = wdata.T
        if wquant.axis is not None:
            wquant = QuantParams(wquant.scale, wquant.zero_point, 1 - wquant.axis)
    n = wdata.shape[axis]
    if wquant.axis is not None and wquant.axis != axis:
        return False
    scales = wquant.scale if len(wquant.scale) == n else wquant.scale * n
    sx = xq.type.quant.scale[0]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    if bias is None:
        b32 = np.zeros(n, np.int32)
    elif _dq_source(bias) is not None and _dq_source(bias).data is not None and \
            _dq_source(bias).type.dtype == "i32":
        b32 = np.asarray(_dq_source(bias).data, np.int32).reshape(-1)
        if op.kind == "Gemm" and op.attrs["beta"] != 1.0:
            return False
    elif bias.data is not None:
        bf = np.asarray(bias.data, np.float64).reshape(-1) * (op.attrs.get("beta", 1.0))
        b32 = np.rint(bf / (np.float64(sx) * np.asarray(scales, np.float64))).astype(np.int32)
    else:
        return False
    if b32.size == 1 and n > 1:
        b32 = np.full(n, int(b32[0]), np.int32)
    if b32.shape != (n,):
        return False
    wq_typed = Value(wq.name + "_w", TensorType("i8", wdata.shape,
                                                QuantParams(tuple(scales), (0,) * n, axis)),
                     data=np.ascontiguousarray(wdata))
    bv = Value(wq.name + "_b", TensorType("i32", (n,)), data=b32)
    mv = Value(wq.name + "_m", TensorType("f32", (n,)),
               data=conv_multipliers(sx, scales, oa["scale"]))
    if op.kind == "Conv":
        attrs = {k: op.attrs[k] for k in ("kernel_shape", "strides", "pads", "dilations",
                                          "group")}
        return _replace(graph, op, "QConv", [xq, wq_typed, bv, mv], {**attrs, **oa}, q)
    return _replace(graph, op, "QMatMul", [xq, wq_typed, bv, mv], oa, q)


def _activate(act: Op | None, ys: np.ndarray) -> np.ndarray:
    """The Relu / Clip between the op and its QuantizeLinear, applied to the op's results."""
    ys = np.asarray(ys, np.float32)
    if act is None:
        return ys
    if act.kind == "Relu":
        return np.maximum(ys, np.float32(0))
    return np.clip(ys, np.float32(act.attrs["min"]), np.float32(act.attrs["max"]))


def _lookup(graph: Graph, op: Op, xq: Value, q: Op, act: Op | None) -> bool:
    from edgecc.kernels import run_op
    xv = next(v for v in op.inputs if v is not None and v.data is None)
    probe = Value("probe", TensorType("f32", (256,)))
    fop = build_op(op.kind, [probe if v is xv else v for v in op.inputs], dict(op.attrs),
                   name=op.name)
    t = q.output.type

    def fn(real):
        return _activate(act, run_op(fop, [real if v is xv else (None if v is None else v.data)
                                           for v in op.inputs])[0])
    table = np.asarray(lookup_table(fn, xq.type.quant, xq.type.dtype, t.quant, t.dtype),
                       dtype=t.np_dtype)
    tv = Value(op.name + "_table", TensorType(t.dtype, (256,)), data=table)
    return _replace(graph, op, "QLookup", [xq, tv], {"fn": op.kind, "scale": t.quant.scale[0],
                                                      "zero_point": t.quant.zero_point[0],
                                                      "to": t.dtype}, q)


def _requantize(graph: Graph, q: Op) -> bool:
    """Q(DQ(x)): x when the parameters agree, else the 256-entry requantization table."""
    x = _dq_source(q.inputs[0])
    t = q.output.type
    if x is None or x.data is not None or x.type.quant.axis is not None or \
            t.quant.axis is not None:
        return False
    if x.type == t:
        if q.output in graph.outputs:
            return False
        graph.replace_all_uses(q.output, x)
        return True
    lo, hi = qrange(x.type.dtype)
    xs = np.arange(lo, hi + 1).astype(x.type.np_dtype)
    table = quantize(dequantize(xs, x.type.quant), t.quant, t.dtype)
    tv = Value(q.name + "_table", TensorType(t.dtype, (256,)), data=table)
    return _replace(graph, q, "QLookup", [x, tv], {"fn": "requantize",
                                                   "scale": t.quant.scale[0],
                                                   "zero_point": t.quant.zero_point[0],
                                                   "to": t.dtype}, q)


def _fold_constant_dequantize(graph: Graph) -> bool:
    """DequantizeLinear of a constant (weights of ops left in float) → float weights."""
    changed = False
    for op in list(graph.ops):
        if op.kind == "DequantizeLinear" and op.inputs[0].data is not None and \
                op.output not in graph.outputs:
            f = graph.add_param(op.output.name + "_f", dequantize(op.inputs[0].data,
                                                                   op.inputs[0].type.quant))
            graph.replace_all_uses(op.output, f)
            changed = True
    return changed
