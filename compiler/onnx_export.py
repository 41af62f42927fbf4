"""edgecc IR → ONNX, so an (optimized) graph runs in onnxruntime.

    model = export_onnx(graph, opset=17)       # onnx.ModelProto, opsets 13–21

Canonical attributes go back to operand tensors where the target opset wants them (Reshape's
shape, Slice's starts/ends/axes/steps, Clip's min/max, Pad's pads, Resize's scales/sizes,
Squeeze/Unsqueeze/Split/reduce axes ...). Fused ops are inlined from their bodies. Ops the
target opset lacks are decomposed (Gelu before 20, HardSwish at 13) or rejected with a
ModelError naming the op and the opset it needs. The blocked layout NCHW{c}c is not ONNX's:
LayoutTransform becomes Reshape+Transpose, and a blocked Conv/pool runs in NCHW between such
conversions (its 6-D weights unblocked by a Transpose+Reshape that onnxruntime folds).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .dtypes import dtype_to_numpy, dtype_to_onnx
from .errors import ModelError, UsageError
from .ir import Graph, Op, Value, unique_name
from .ops import get_opdef, has_trait, kinds_with
from .onnx_export_quant import QUANT_RULES
from .ops.layout import layout_of

MIN_EXPORT_OPSET, MAX_EXPORT_OPSET = 13, 21
_INT64_MIN = int(np.iinfo(np.int64).min)


def export_onnx(graph: Graph, opset: int | None = None) -> onnx.ModelProto:
    """An ONNX model computing what `graph` computes (weights become initializers). The
    default opset is 17, or the first one that has every op of the graph."""
    if opset is None:
        opset = max([17] + [_first_opset(op) for op in _ops(graph)])
    if not MIN_EXPORT_OPSET <= opset <= MAX_EXPORT_OPSET:
        raise UsageError(f"cannot export to opset {opset}; edgecc exports opsets "
                         f"{MIN_EXPORT_OPSET}-{MAX_EXPORT_OPSET}")
    return _Exporter(graph, opset).run()


def _ops(graph: Graph) -> list[Op]:
    out = []
    for op in graph.ops:
        out += _ops(op.attrs["body"]) if op.kind == "Fused" else [op]
    return out


def _first_opset(op: Op) -> int:
    """The first opset that can express `op`: where ONNX introduced its kind (edgecc's own
    ops are written with older ones), or where its form appeared (its onnx_form hook)."""
    d = get_opdef(op.kind)
    if d is not None and d.onnx_form is not None:
        return d.onnx_form(op, MAX_EXPORT_OPSET)[0]
    versions = [s.since_version for s in onnx.defs.get_all_schemas_with_history()
                if s.name == op.kind and s.domain == ""]
    return min(versions, default=MIN_EXPORT_OPSET)


def _ir_version(opset: int) -> int:
    return 8 if opset <= 17 else 9 if opset <= 19 else 10


def _attr_ok(v) -> bool:
    return v is not None and not (isinstance(v, (list, tuple)) and len(v) == 0)


class _Exporter:
    def __init__(self, graph: Graph, opset: int):
        self.graph, self.opset = graph, opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: dict[Value, str] = {}
        self.taken = {v.name for v in graph.values()}
        self.node_names: set[str] = set()

    # ---- naming / emitting -------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        return unique_name(base, self.taken)

    def name(self, v: Value | None) -> str:
        return "" if v is None else self.names[v]

    def const(self, array, base: str) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, base: str) -> str:
        return self.const(np.array(values, dtype=np.int64), base)

    def node(self, op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs):
        while inputs and inputs[-1] == "":      # trailing omitted optionals
            inputs = inputs[:-1]
        node_name = name or op_type
        k = 1
        while node_name in self.node_names:
            node_name, k = f"{name or op_type}_{k}", k + 1
        self.node_names.add(node_name)
        attrs = {k: v for k, v in attrs.items() if _attr_ok(v)}
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=node_name, **attrs))

    def tmp(self, base: str) -> str:
        return self.fresh(base)

    # ---- main --------------------------------------------------------------------------------
    def run(self) -> onnx.ModelProto:
        g = self.graph
        for v in list(g.inputs) + list(g.params):
            self.names[v] = v.name
        for p in g.params:
            self.inits.append(numpy_helper.from_array(np.asarray(p.data), p.name))
        for op in g.ops:
            for v in op.outputs:
                self.names[v] = v.name
            self.export_op(op)
        outputs = []
        for v in g.outputs:
            name = self.names[v]
            if v in g.inputs or v.is_param or name in (o.name for o in outputs):
                # an output must be produced by a node under its own name
                new = self.fresh(f"{v.name}_out")
                self.node("Identity", [name], [new], f"{v.name}_out")
                name = new
            outputs.append(self._value_info(name, v))
        used = {i for n in self.nodes for i in n.input} | {o.name for o in outputs}
        self.inits = [t for t in self.inits if t.name in used]   # (e.g. int8 ops' multipliers)
        graph = helper.make_graph(self.nodes, g.name, [self._value_info(v.name, v)
                                                       for v in g.inputs], outputs, self.inits)
        from .version import __version__
        model = helper.make_model(graph, producer_name="edgecc", producer_version=__version__,
                                  opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = _ir_version(self.opset)
        return model

    @staticmethod
    def _value_info(name: str, v: Value) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, dtype_to_onnx(v.type.dtype),
                                             list(v.type.shape))

    def export_op(self, op: Op):
        quantized = [v for v in op.outputs if v.type.quant is not None]
        if quantized and op.kind not in _EXPORTERS and not has_trait(op, "quant_transparent"):
            raise ModelError(f"{op.describe()}: result %{quantized[0].name} is quantized "
                             f"({quantized[0].type}) and {op.kind} has no ONNX form on int8 values")
        fn = _EXPORTERS.get(op.kind, _generic)
        fn(self, op, [self.name(v) for v in op.inputs], [self.names[v] for v in op.outputs])

    def need(self, op: Op, opset: int):
        if self.opset < opset:
            raise ModelError(f"{op.describe()}: {op.kind} needs ONNX opset >= {opset}; "
                             f"export with opset {opset} or higher")


# ---- per-op rules ----------------------------------------------------------------------------------
_EXPORTERS = {}


def _rule(*kinds):
    def register(fn):
        for k in kinds:
            _EXPORTERS[k] = fn
        return fn
    return register


def _spelled(ex: _Exporter, op: Op) -> dict:
    """The op's attributes as this opset spells them (its onnx_form hook, if it has one)."""
    d = get_opdef(op.kind)
    if d is None or d.onnx_form is None:
        return op.attrs
    first, attrs = d.onnx_form(op, ex.opset)
    ex.need(op, first)
    return attrs


def _generic(ex: _Exporter, op: Op, ins, outs):
    """Ops whose canonical attributes are ONNX attributes as they are (those the op holds for
    a constant ONNX operand, onnx_consts, go back to being that operand)."""
    d = get_opdef(op.kind)
    consts = dict(d.onnx_consts)
    op_attrs = _spelled(ex, op)
    attrs = {}
    for k, v in op_attrs.items():
        if k in consts.values():
            continue
        if isinstance(v, np.ndarray):
            v = numpy_helper.from_array(v)
        attrs[k] = v
    ins = list(ins)
    for i, k in sorted(consts.items()):
        v = op.attrs[k]
        ins.insert(i, ex.ints(v if isinstance(v, list) else [v], f"{op.name}_{k}"))
    ex.node(op.kind, ins, outs, op.name, **attrs)


@_rule("Cast")
def _cast(ex, op, ins, outs):
    ex.node("Cast", ins, outs, op.name, to=dtype_to_onnx(op.attrs["to"]))


@_rule("Clip")
def _clip(ex, op, ins, outs):
    np_dtype = dtype_to_numpy(op.inputs[0].type.dtype)
    bounds = []
    for key in ("min", "max"):
        v = op.attrs.get(key)
        bounds.append("" if v is None or (isinstance(v, float) and math.isinf(v))
                      else ex.const(np.array(v, dtype=np_dtype), f"{op.name}_{key}"))
    ex.node("Clip", [ins[0], *bounds], outs, op.name)


@_rule("Reshape", "Expand", "Tile")
def _shape_operand(ex, op, ins, outs):
    key = {"Reshape": "shape", "Expand": "shape", "Tile": "repeats"}[op.kind]
    ex.node(op.kind, [ins[0], ex.ints(op.attrs[key], f"{op.name}_{key}")], outs, op.name)


@_rule("Squeeze", "Unsqueeze")
def _squeeze(ex, op, ins, outs):
    ex.node(op.kind, [ins[0], ex.ints(op.attrs["axes"], f"{op.name}_axes")], outs, op.name)


@_rule("Split")
def _split(ex, op, ins, outs):
    ex.node("Split", [ins[0], ex.ints(op.attrs["split"], f"{op.name}_split")], outs, op.name,
            axis=op.attrs["axis"])


@_rule("Slice")
def _slice(ex, op, ins, outs):
    a = op.attrs
    # canonical end -1 with a negative step means "before index 0"; ONNX would read it as dim-1
    ends = [_INT64_MIN if st < 0 and e < 0 else e for e, st in zip(a["ends"], a["steps"])]
    ex.node("Slice", [ins[0], ex.ints(a["starts"], f"{op.name}_starts"),
                      ex.ints(ends, f"{op.name}_ends"), ex.ints(a["axes"], f"{op.name}_axes"),
                      ex.ints(a["steps"], f"{op.name}_steps")], outs, op.name)


@_rule("Pad")
def _pad(ex, op, ins, outs):
    a = op.attrs
    if a["mode"] == "wrap":
        ex.need(op, 19)
    value = ex.const(np.array(a["value"], dtype=dtype_to_numpy(op.inputs[0].type.dtype)),
                     f"{op.name}_value")
    ex.node("Pad", [ins[0], ex.ints(a["pads"], f"{op.name}_pads"), value], outs, op.name,
            mode=a["mode"])


@_rule("Resize")
def _resize(ex, op, ins, outs):
    a = dict(_spelled(ex, op))
    sizes, scales, roi = a.pop("sizes"), a.pop("scales"), a.pop("roi", None)
    in_shape = op.inputs[0].type.shape
    s32 = np.array(scales, dtype=np.float32)
    roi = ex.const(np.array(roi, np.float32), f"{op.name}_roi") if roi else ""
    # scales drive the coordinate transform; keep them when ONNX derives the same sizes
    if all(int(math.floor(i * float(s))) == o for i, s, o in zip(in_shape, s32, sizes)):
        operands = [ins[0], roi, ex.const(s32, f"{op.name}_scales")]
    else:
        operands = [ins[0], roi, "", ex.ints(sizes, f"{op.name}_sizes")]
    ex.node("Resize", operands, outs, op.name, **a)


@_rule(*sorted(k for k in kinds_with("reduction") if k.startswith("Reduce")))
def _reduce(ex, op, ins, outs):
    axes, keep = op.attrs["axes"], op.attrs["keepdims"]
    if op.kind == "ReduceSum" or ex.opset >= 18:
        ex.node(op.kind, [ins[0], ex.ints(axes, f"{op.name}_axes")], outs, op.name,
                keepdims=keep)
    else:
        ex.node(op.kind, ins[:1], outs, op.name, axes=axes, keepdims=keep)


@_rule("LayerNormalization")
def _layer_norm(ex, op, ins, outs):
    ex.need(op, 17)
    _generic(ex, op, ins, outs)


@_rule("HardSwish")
def _hard_swish(ex, op, ins, outs):
    if ex.opset >= 14:
        return _generic(ex, op, ins, outs)
    hs = ex.tmp(f"{outs[0]}_hsig")          # x * HardSigmoid(x; 1/6, 1/2)
    ex.node("HardSigmoid", ins, [hs], f"{op.name}_hsig", alpha=1 / 6, beta=0.5)
    ex.node("Mul", [ins[0], hs], outs, op.name)


@_rule("Gelu")
def _gelu(ex, op, ins, outs):
    if ex.opset >= 20:
        return _generic(ex, op, ins, outs)
    x, n = ins[0], op.name
    dt = dtype_to_numpy(op.inputs[0].type.dtype)
    c = lambda v, tag: ex.const(np.array(v, dtype=dt), f"{n}_{tag}")  # noqa: E731
    t = [ex.tmp(f"{outs[0]}_t{i}") for i in range(6)]
    if op.attrs.get("approximate", "none") == "tanh":
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        ex.node("Mul", [x, x], [t[0]], f"{n}_sq")
        ex.node("Mul", [t[0], c(0.044715, "k")], [t[1]], f"{n}_k")
        ex.node("Mul", [t[1], x], [t[2]], f"{n}_cube")
        ex.node("Add", [t[2], x], [t[3]], f"{n}_inner")
        ex.node("Mul", [t[3], c(math.sqrt(2 / math.pi), "s")], [t[4]], f"{n}_scale")
        ex.node("Tanh", [t[4]], [t[5]], f"{n}_tanh")
    else:
        # 0.5·x·(1 + erf(x/√2))
        ex.node("Mul", [x, c(1 / math.sqrt(2), "s")], [t[4]], f"{n}_scale")
        ex.node("Erf", [t[4]], [t[5]], f"{n}_erf")
    one, half = ex.tmp(f"{outs[0]}_1p"), ex.tmp(f"{outs[0]}_half")
    ex.node("Add", [t[5], c(1.0, "one")], [one], f"{n}_1p")
    ex.node("Mul", [x, c(0.5, "half")], [half], f"{n}_halfx")
    ex.node("Mul", [half, one], outs, n)


@_rule("LSTM")
def _lstm(ex, op, ins, outs):
    attrs = dict(op.attrs)
    if not attrs.get("clip"):
        attrs.pop("clip", None)     # canonical 0.0 means "no clip"; ONNX has no such value
    if ex.opset < 14:               # `layout` arrived in opset 14
        if attrs.pop("layout", 0):
            ex.need(op, 14)
    ex.node("LSTM", ins, outs, op.name, **attrs)


def _block(ex, src: str, dst: str, nchw_shape, c: int, name: str):
    """[N, C, H, W] -> [N, C/c, H, W, c]."""
    n, ch, h, w = nchw_shape
    split = ex.tmp(f"{dst}_split")
    ex.node("Reshape", [src, ex.ints([n, ch // c, c, h, w], f"{name}_shape")], [split],
            f"{name}_split")
    ex.node("Transpose", [split], [dst], name, perm=[0, 1, 3, 4, 2])


def _unblock(ex, src: str, dst: str, blocked_shape, name: str):
    """[N, C/c, H, W, c] -> [N, C, H, W]."""
    n, cb, h, w, c = blocked_shape
    lanes = ex.tmp(f"{dst}_lanes")
    ex.node("Transpose", [src], [lanes], f"{name}_lanes", perm=[0, 1, 4, 2, 3])
    ex.node("Reshape", [lanes, ex.ints([n, cb * c, h, w], f"{name}_shape")], [dst], name)


@_rule("LayoutTransform")
def _layout_transform(ex, op, ins, outs):
    c = layout_of(op, "dst_layout").block
    if c is None:
        _unblock(ex, ins[0], outs[0], op.inputs[0].type.shape, op.name or outs[0])
    else:
        _block(ex, ins[0], outs[0], op.inputs[0].type.shape, c, op.name or outs[0])


@_rule(*sorted(kinds_with("layout_aware")))
def _layout_op(ex, op, ins, outs):
    """Conv/pools: `layout` is edgecc's attribute; a blocked op runs NCHW between conversions."""
    attrs = {k: v for k, v in _spelled(ex, op).items() if k != "layout"}
    c = layout_of(op).block
    if c is None:
        return ex.node(op.kind, ins, outs, op.name, **attrs)
    base = op.name or outs[0]
    args = list(ins)
    args[0] = ex.tmp(f"{ins[0]}_nchw")
    _unblock(ex, ins[0], args[0], op.inputs[0].type.shape, f"{base}/x_nchw")
    if op.kind == "Conv":          # W6[mb, cb, y, x, i, o] -> W[mb*c+o, cb*ci+i, y, x]
        mb, cb, kh, kw, ci, _ = op.inputs[1].type.shape
        lanes, args[1] = ex.tmp(f"{ins[1]}_lanes"), ex.tmp(f"{ins[1]}_nchw")
        ex.node("Transpose", [ins[1]], [lanes], f"{base}/w_lanes", perm=[0, 5, 1, 4, 2, 3])
        ex.node("Reshape", [lanes, ex.ints([mb * c, cb * ci, kh, kw], f"{base}/w_shape")],
                [args[1]], f"{base}/w_nchw")
    n, mb, oh, ow, _ = op.output.type.shape
    y = ex.tmp(f"{outs[0]}_nchw")
    ex.node(op.kind, args, [y], op.name, **attrs)
    _block(ex, y, outs[0], (n, mb * c, oh, ow), c, f"{base}/y_blocked")


@_rule("Fused")
def _fused(ex, op, ins, outs):
    """Inline the body: body inputs bind to the operands, body outputs are the results."""
    body: Graph = op.attrs["body"]
    prefix = op.name or "fused"
    for bv, outer in zip(body.inputs, op.inputs):
        ex.names[bv] = ex.name(outer)
    for p in body.params:
        ex.names[p] = ex.const(p.data, f"{prefix}/{p.name}")
    result_of, copies = {}, []
    for bv, name in zip(body.outputs, outs):
        if bv in result_of:
            copies.append((bv, name))       # the same body value returned twice
        else:
            result_of[bv] = name
    produced = {v for inner in body.ops for v in inner.outputs}
    for inner in body.ops:
        for v in inner.outputs:
            ex.names[v] = result_of[v] if v in result_of else ex.fresh(f"{prefix}/{v.name}")
        ex.export_op(inner)
    for bv, name in result_of.items():      # a body output that is an input or a weight
        if bv not in produced:
            ex.node("Identity", [ex.name(bv)], [name], f"{prefix}/{name}")
    for bv, name in copies:
        ex.node("Identity", [ex.name(bv)], [name], f"{prefix}/{name}")


_EXPORTERS.update(QUANT_RULES)         # int8 ops as QDQ (onnx_export_quant.py)
