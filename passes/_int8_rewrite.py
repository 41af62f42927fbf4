"""The int8 rewrite of quantize-int8: which ops run in int8 (a Decision, for a given set of
ops kept in float) and the graph that does it (compiler/ops/quant.py has the ops).

An op runs in int8 when it has an int8 form and is not kept in float:
  - Conv (NCHW), Gemm / MatMul with constant weights → QConv / QMatMul, a Relu or Clip that
    is the only reader of the result absorbed as the integer clamp;
  - Add / Sub / Mul of two activations, at least one of them int8 → QAdd / QMul;
  - GlobalAveragePool / AveragePool of an int8 value → QGlobalAveragePool / QAveragePool;
  - any elementwise float function of one int8 value (its other operands constant scalars:
    Sigmoid, HardSwish, x + c ...) → QLookup.
Ops that only move values (the quant_transparent trait) follow their operand: int8 in,
int8 out, one shared scale and zero point for the values they join (the union of their
ranges). Everything else runs in float; DequantizeLinear / QuantizeLinear mark the
boundaries; graph inputs and outputs stay float.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from edgecc.ir import Graph, Op, QuantParams, TensorType, Value
from edgecc.ops import build_op, has_trait
from edgecc.quant import (conv_multipliers, lookup_table, params_for_range, qrange,
                          quantize_bias, quantize_weights, symmetric_weight_params)

from ._rewrite import const


class Groups:
    """Values that must share quantization parameters (joined by ops that only move values);
    a group's range is the union of its members' ranges."""

    def __init__(self, ranges):
        self.ranges, self.parent = ranges, {}

    def find(self, n):
        self.parent.setdefault(n, n)
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)

    def range(self, name) -> tuple[float, float]:
        root = self.find(name)
        lo, hi = 0.0, 0.0
        for n in list(self.parent):
            if self.find(n) == root and n in self.ranges:
                lo, hi = min(lo, self.ranges[n][0]), max(hi, self.ranges[n][1])
        return lo, hi


@dataclass
class Decision:
    int8_ops: dict[str, bool]                 # op name -> int8? (ops that have an int8 form)
    quantized: set[str]                       # values stored in int8
    noisy: set[str]                           # those whose quantization adds error (not
    #                                           copies made by value-moving ops)
    groups: Groups
    absorbed: dict[str, Op] = field(default_factory=dict)   # op -> its absorbed activation
    skipped: set[str] = field(default_factory=set)          # the absorbed activations
    moved: set[str] = field(default_factory=set)            # value-moving ops run on int8

    def int8(self, op: Op) -> bool:
        return bool(self.int8_ops.get(op.name))


def has_int8_form(op: Op) -> bool:
    """Ops quantize-int8 can turn into an integer op (given int8 operands where needed)."""
    return (_contraction_weights(op) is not None or _binary(op) or op.kind in
            ("GlobalAveragePool", "AveragePool") and str(op.attrs.get("layout", "NCHW")) ==
            "NCHW" or lookup_form(op))


def _binary(op: Op) -> bool:
    acts = [v for v in op.inputs if v is not None and v.data is None]
    return op.kind in ("Add", "Sub", "Mul") and len(acts) == 2 and \
        all(v.type.dtype == "f32" for v in acts)


def lookup_form(op: Op) -> bool:
    """An elementwise float function of one activation (other operands constant scalars)."""
    if not has_trait(op, "elementwise") or has_trait(op, "quantized") or len(op.outputs) != 1 \
            or op.kind == "Cast":
        return False
    acts = [v for v in op.inputs if v is not None and v.data is None]
    consts = [v for v in op.inputs if v is not None and v.data is not None]
    return (len(acts) == 1 and acts[0].type.dtype == "f32" and op.output.type.dtype == "f32"
            and acts[0].type.shape == op.output.type.shape
            and all(c.data.size == 1 for c in consts))


def _contraction_weights(op: Op):
    """(W float [K, N] or the conv's [M, C/g, *k], bias or None, axis of the output channel)
    of a Conv / Gemm / MatMul with constant weights and an activation input, else None."""
    if not has_trait(op, "contraction") or has_trait(op, "quantized"):
        return None
    x = op.inputs[0]
    if x is None or const(x) is not None or x.type.dtype != "f32":
        return None
    if op.kind == "Conv":
        b = op.inputs[2] if len(op.inputs) > 2 else None
        if const(op.inputs[1]) is None or (b is not None and const(b) is None) or \
                str(op.attrs.get("layout", "NCHW")) != "NCHW" or x.type.rank < 3:
            return None
        return np.asarray(op.inputs[1].data, np.float32), (None if b is None else b.data), 0
    if op.kind == "MatMul":
        b = op.inputs[1]
        if const(b) is None or b.type.rank != 2 or x.type.rank < 2:
            return None
        return np.asarray(b.data, np.float32), None, 1
    if op.kind != "Gemm":
        return None
    b, c = op.inputs[1], (op.inputs[2] if len(op.inputs) > 2 else None)
    if const(b) is None or op.attrs["transA"] or x.type.rank != 2:
        return None
    w = np.asarray(b.data, np.float32)
    w = (w.T if op.attrs["transB"] else w) * np.float32(op.attrs["alpha"])
    bias = None
    if c is not None:
        if const(c) is None:
            return None
        cd = np.asarray(c.data, np.float32) * np.float32(op.attrs["beta"])
        n = w.shape[1]
        if cd.size == 1:
            bias = np.full(n, float(cd.reshape(-1)[0]), np.float32)
        elif cd.shape in ((n,), (1, n)):
            bias = cd.reshape(n)
        else:
            return None
    return np.ascontiguousarray(w), bias, 1


def contraction_weights(op: Op):
    return _contraction_weights(op)


def _absorbable(op: Op, users, graph: Graph, kept_float) -> Op | None:
    """The Relu / Clip that is the only reader of op's result, to run as its integer clamp."""
    readers = users.get(op.output, [])
    if len(readers) != 1 or op.output in graph.outputs:
        return None
    act = readers[0]
    if act.name in kept_float:
        return None
    if act.kind == "Relu" or (act.kind == "Clip" and act.attrs["min"] <= 0.0 <= act.attrs["max"]):
        return act
    return None


def decide(src: Graph, ranges, kept_float: set[str]) -> Decision:
    """Which ops run in int8 and which values are stored in int8, in op order."""
    users = src.users()
    groups = Groups(ranges)
    d = Decision({}, set(), set(), groups)
    for op in src.ops:
        if op.name in d.skipped:
            continue
        acts = [v for v in op.inputs if v is not None and v.data is None]
        qin = [v for v in acts if v.name in d.quantized]
        form = has_int8_form(op)
        needs_q_input = form and (_contraction_weights(op) is not None)
        go = form and op.name not in kept_float and (needs_q_input or bool(qin))
        if go:
            result = op.output.name
            if _contraction_weights(op) is not None or (op.kind in ("Add", "Sub")):
                a = _absorbable(op, users, src, kept_float)
                if a is not None:
                    d.absorbed[op.name], result = a, a.output.name
                    d.skipped.add(a.name)
            d.int8_ops[op.name] = True
            d.quantized.add(result)
            d.noisy.add(result)
            for v in acts:                       # float operands get quantized here
                if v.name not in d.quantized:
                    d.quantized.add(v.name)
                    d.noisy.add(v.name)
            continue
        if form:
            d.int8_ops[op.name] = False
        if has_trait(op, "quant_transparent") and qin and \
                not (op.kind == "Resize" and op.attrs["mode"] != "nearest"):
            data_ins = [v for v in acts if v.type.dtype == "f32"]
            d.moved.add(op.name)
            for v in op.outputs:
                d.quantized.add(v.name)
                for x in data_ins:
                    groups.union(v.name, x.name)
                    if x.name not in d.quantized:     # a float operand joining int8 ones
                        d.quantized.add(x.name)
                        d.noisy.add(x.name)
    return d


# ---- building the int8 graph -------------------------------------------------------------------

class Builder:
    """Emits the int8 graph: float and int8 versions of each value, made on demand."""

    def __init__(self, src: Graph, groups: Groups, act: str):
        self.src, self.groups, self.act = src, groups, act
        self.g = Graph(src.name, list(src.inputs), [], [], [])
        self.fv: dict[str, Value] = {v.name: v for v in src.inputs}
        self.fv.update({p.name: p for p in src.params})
        self.qv: dict[str, Value] = {}
        self.taken = {v.name for v in src.values()}
        self.shared: dict[tuple, Value] = {}

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def params(self, name: str) -> QuantParams:
        lo, hi = self.groups.range(name)
        return params_for_range(lo, hi, self.act)

    def emit(self, kind, inputs, attrs, outs, name) -> list[Value]:
        op = build_op(kind, inputs, attrs, name=name, out_names=outs)
        self.g.ops.append(op)
        return op.outputs

    def f(self, name: str) -> Value:
        """The float version of value `name` (dequantized when only int8 exists)."""
        if name not in self.fv:
            self.fv[name] = self.emit("DequantizeLinear", [self.qv[name]], {}, [name],
                                      f"{name}/dequantize")[0]
        return self.fv[name]

    def q(self, name: str) -> Value:
        """The int8 version of value `name` (quantized when only float exists)."""
        if name not in self.qv:
            p = self.params(name)
            self.qv[name] = self.emit(
                "QuantizeLinear", [self.f(name)],
                {"scale": list(p.scale), "zero_point": list(p.zero_point), "to": self.act},
                [self.fresh(f"{name}_q")], f"{name}/quantize")[0]
        return self.qv[name]

    def param(self, base: str, array, quant=None) -> Value:
        """A new weight; int8 weights equal to one made before are that one (a weight read by
        several ops, e.g. an unrolled recurrence's, is stored once)."""
        t = TensorType.of(array)
        key = None
        if quant is not None:
            key = (t.dtype, t.shape, quant, hashlib.sha256(np.ascontiguousarray(array)).digest())
            if key in self.shared:
                return self.shared[key]
        v = Value(self.fresh(base), TensorType(t.dtype, t.shape, quant), data=array)
        if key is not None:
            self.shared[key] = v
        return v

    def out_attrs(self, name: str, clamp=None) -> dict:
        p = self.params(name)
        a = {"scale": p.scale[0], "zero_point": p.zero_point[0], "to": self.act}
        if clamp is not None:
            a["clamp"] = clamp
        return a

    def finish(self) -> Graph:
        self.g.outputs = [self.f(v.name) for v in self.src.outputs]
        seen, params = set(), []
        for v in [v for op in self.g.ops for v in op.inputs]:
            if v is not None and v.data is not None and id(v) not in seen:
                seen.add(id(v))
                params.append(v)
        self.g.params = params
        return self.g


def rewrite(src: Graph, d: Decision, act: str, weight_bits: int = 8, weights=None):
    """(the int8 graph, {float value name: its int8 value's name}); `weights` {op name:
    (int8 weights, QuantParams)} overrides rounding to nearest (_int8_weights)."""
    b = Builder(src, d.groups, act)
    b.weights = weights or {}
    for op in src.ops:
        if op.name in d.skipped:
            continue
        a = d.absorbed.get(op.name)
        if d.int8(op):
            result = a.output.name if a is not None else op.output.name
            b.qv[result] = _emit_int8(op, a, result, b, weight_bits)
        elif op.name in d.moved:
            ins = [None if v is None else (b.q(v.name) if v.data is None and
                                           v.type.dtype == "f32" else b.fv[v.name])
                   for v in op.inputs]
            outs = [b.fresh(f"{v.name}_q") for v in op.outputs]
            for v, new in zip(op.outputs, b.emit(op.kind, ins, dict(op.attrs), outs, op.name)):
                b.qv[v.name] = new
        else:
            ins = [None if v is None else (v if v.data is not None else b.f(v.name))
                   for v in op.inputs]
            for v, new in zip(op.outputs, b.emit(op.kind, ins, dict(op.attrs),
                                                 [v.name for v in op.outputs], op.name)):
                b.fv[v.name] = new
    g = b.finish()
    return g, {n: v.name for n, v in b.qv.items()}


def _clamp(act: Op | None, result: str, b: Builder) -> list[int] | None:
    """Integer bounds of an absorbed Relu / Clip in the result's parameters."""
    if act is None:
        return None
    p = b.params(result)
    lo, hi = qrange(b.act)
    s, zp = p.scale[0], p.zero_point[0]
    mn = 0.0 if act.kind == "Relu" else act.attrs["min"]
    mx = math.inf if act.kind == "Relu" else act.attrs["max"]
    qlo = lo if mn == -math.inf else int(np.clip(round(mn / s) + zp, lo, hi))
    qhi = hi if mx == math.inf else int(np.clip(round(mx / s) + zp, lo, hi))
    return [qlo, qhi]


def _emit_int8(op: Op, act: Op | None, result: str, b: Builder, bits: int) -> Value:
    clamp = _clamp(act, result, b)
    out = b.fresh(f"{result}_q")
    cw = _contraction_weights(op)
    if cw is not None:
        w, bias, axis = cw
        x = b.q(op.inputs[0].name)
        if op.kind == "Conv":
            attrs = {k: op.attrs[k] for k in ("kernel_shape", "strides", "pads", "dilations",
                                              "group")}
            return contraction(b, "QConv", x, w, bias, axis, attrs, result, out, clamp,
                               op.name, bits)
        return contraction(b, "QMatMul", x, w, bias, axis, {}, result, out, clamp, op.name,
                           bits)
    if _binary(op):
        x, y = b.q(op.inputs[0].name), b.q(op.inputs[1].name)
        attrs = b.out_attrs(result, clamp)
        if op.kind != "Mul":
            attrs["b_sign"] = -1 if op.kind == "Sub" else 1
        return b.emit("QMul" if op.kind == "Mul" else "QAdd", [x, y], attrs, [out], op.name)[0]
    if op.kind == "GlobalAveragePool":
        return b.emit("QGlobalAveragePool", [b.q(op.inputs[0].name)], b.out_attrs(result),
                      [out], op.name)[0]
    if op.kind == "AveragePool":
        attrs = {k: op.attrs[k] for k in ("kernel_shape", "strides", "pads", "dilations",
                                          "ceil_mode", "count_include_pad")}
        return b.emit("QAveragePool", [b.q(op.inputs[0].name)],
                      {**attrs, **b.out_attrs(result)}, [out], op.name)[0]
    return _lookup(op, result, out, b)


def contraction(b: Builder, kind, x, w, bias, axis, attrs, result, out, clamp, name, bits):
    """QConv / QMatMul: weights i8 per output channel (axis), bias i32, multipliers M."""
    n = w.shape[axis]
    if name in b.weights:
        wq, wq_params = b.weights[name]
    else:
        wq_params = symmetric_weight_params(w, axis, bits)
        wq = quantize_weights(w, wq_params, bits)
    sx = x.type.quant.scale[0]
    oa = b.out_attrs(result, clamp)
    bq = quantize_bias(bias, sx, wq_params.scale, n)
    m = conv_multipliers(sx, wq_params.scale, oa["scale"])
    ins = [x, b.param(f"{name}_w_q", wq, wq_params), b.param(f"{name}_b_q", bq),
           b.param(f"{name}_m", m)]
    return b.emit(kind, ins, {**attrs, **oa}, [out], name)[0]


def _lookup(op: Op, result: str, out: str, b: Builder) -> Value:
    """QLookup: the op applied by its reference kernel to each of the 256 int8 inputs."""
    from edgecc.kernels import run_op
    xv = next(v for v in op.inputs if v is not None and v.data is None)
    x = b.q(xv.name)
    probe = Value("probe", TensorType("f32", (256,)))
    fop = build_op(op.kind, [probe if v is xv else v for v in op.inputs], dict(op.attrs),
                   name=op.name)

    def fn(real):
        return run_op(fop, [real if v is xv else (None if v is None else v.data)
                            for v in op.inputs])[0]
    oa = b.out_attrs(result)
    yq = QuantParams((oa["scale"],), (oa["zero_point"],), None)
    table = np.asarray(lookup_table(fn, x.type.quant, x.type.dtype, yq, b.act)).astype(
        {"u8": np.uint8, "i8": np.int8}[b.act])
    return b.emit("QLookup", [x, b.param(f"{op.name}_table", table)],
                  {"fn": op.kind, **oa}, [out], op.name)[0]
