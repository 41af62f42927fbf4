"""ONNX → edgecc IR.

    graph = import_onnx("model.onnx", {"x": (1, 3, 224, 224)})
    graph.onnx_node_count        # number of ONNX nodes before import (for report.json)

Steps, in order, so that bad input fails before any work: load and parse the file; check the
opset (7–22), report every unsupported node at once; check the dataflow (dangling inputs,
cycles, duplicate names); bind the input shapes; decode initializers; translate each node
(onnx_import_ops.py) into canonical ops, folding every op whose operands are all constants
(Shape, ConstantOfShape, ... are computed directly, the rest by the reference kernels);
finally drop unused weights and verify the graph.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .dtypes import onnx_to_dtype
from .errors import EdgeccError, ModelError, UnsupportedOpsError, UsageError, option
from .ir import Graph, TensorType, Value, unique_name
from .onnx_import_check import (DEFAULT_DOMAINS, MAX_ELEMENTS, check_structure, default_opset,
                                dtype_name, load_model, node_label, tensor_to_array)
from .onnx_import_ops import CONVERTERS, unsupported_hint
from .onnx_import_quant import MICROSOFT_OPS
from .opdef import OpRuleError
from .ops import build_op, verify_graph

# The text IR quotes names it cannot print plainly, so ONNX names are kept as they are;
# only control characters (which no printer or file name should carry) are replaced.
# An all-constant op whose results are larger than this stays in the graph (e.g. an Expand
# of a weight): folding would only trade compute for memory.
FOLD_MAX_ELEMENTS = 2 ** 26
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f]")


def import_onnx(model_or_path, input_shapes: dict[str, tuple[int, ...]] | None = None,
                fed_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Import an ONNX model (path or ModelProto) into a verified canonical Graph.

    `input_shapes` binds inputs with dynamic dims; `fed_shapes` are the shapes of arrays the
    caller will feed (an input with dynamic dims and no binding takes its array's shape).
    The returned graph carries `onnx_node_count` (ONNX nodes before import) and `onnx_opset`.
    Raises UsageError (bad path / bad or missing binding), ModelError or UnsupportedOpsError.
    """
    model, label = load_model(model_or_path)
    return _Importer(model, label).run(input_shapes or {}, fed_shapes or {})


def _sanitize(name: str) -> str:
    return _NAME_BAD.sub("_", name) or "v"


def _attr_value(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8", "replace") for s in v]
    return v


class NodeCtx:
    """What a converter sees of one ONNX node: operands, attributes and an `emit` to build ops."""

    def __init__(self, imp: "_Importer", node: onnx.NodeProto, name: str):
        self.imp, self.node, self.name = imp, node, name
        self.kind = node.op_type
        self.opset = imp.opset
        self.attrs = {a.name: _attr_value(a) for a in node.attribute}

    # ---- operands --------------------------------------------------------------------------
    def where(self) -> str:
        return f"{self.imp.label}: node '{self.name}' ({self.kind})"

    def error(self, msg: str) -> ModelError:
        return ModelError(f"{self.where()}: {msg}")

    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    def input(self, i: int, what: str | None = None) -> Value | None:
        """Operand i, or None when absent; `what` makes it required."""
        name = self.node.input[i] if i < len(self.node.input) else ""
        if not name:
            if what:
                raise self.error(f"{what} input (#{i}) is required")
            return None
        return self.imp.env[name]

    def inputs(self) -> list[Value | None]:
        return [self.input(i) for i in range(self.n_inputs)]

    def shape(self, i: int = 0) -> tuple[int, ...]:
        return self.input(i, "data").type.shape

    def const(self, i: int, what: str) -> np.ndarray | None:
        """Operand i as a constant array (None when absent); an error if it is computed."""
        v = self.input(i)
        if v is None:
            return None
        if v.data is None:
            raise self.error(f"{what} input is not constant; {self.imp.shape_hint(v)}")
        return v.data

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    # ---- results ---------------------------------------------------------------------------
    def out(self, i: int = 0) -> str:
        """The IR name of ONNX output i (a fresh name when the output is omitted)."""
        name = self.node.output[i] if i < len(self.node.output) else ""
        return self.imp.names[name] if name else self.tmp(f"{self.name}_unused{i}")

    def tmp(self, base: str) -> str:
        return self.imp.fresh(_sanitize(base))

    def used(self, i: int) -> bool:
        """Whether ONNX output i exists and something (a node or a graph output) reads it."""
        name = self.node.output[i] if i < len(self.node.output) else ""
        return bool(name) and name in self.imp.used

    def weight(self, array, base: str) -> Value:
        """A constant operand made up by the converter (a weight if it stays in the graph)."""
        return self.imp.constant(np.asarray(array), self.tmp(f"{self.name}_{base}"), self)

    def constant(self, array: np.ndarray, i: int = 0) -> Value:
        """Output i is the constant `array` (folded, becomes a weight if anything uses it)."""
        return self.imp.constant(np.asarray(array), self.out(i), self)

    def emit(self, kind: str, inputs: list, attrs: dict | None = None,
             outs: list[str] | None = None, suffix: str = "", fold: bool = True) -> list[Value]:
        """Append op `kind`; with fold, an op whose operands are all constant is computed
        now (fold=False keeps it: a DequantizeLinear of int8 weights fold-qdq reads)."""
        return self.imp.emit(self, kind, inputs, attrs or {}, outs, suffix, fold)


class _Importer:
    def __init__(self, model: onnx.ModelProto, label: str):
        self.model, self.label = model, label
        self.g = model.graph
        self.env: dict[str, Value] = {}
        self.names: dict[str, str] = {}       # ONNX value name -> IR name
        self.taken: set[str] = set()
        self.fold_failed: dict[Value, str] = {}
        self.graph = Graph(_sanitize(self.g.name or label.rsplit(".", 1)[0]))

    # ---- naming ----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        return unique_name(base, self.taken)

    def _assign_names(self):
        onnx_names = [t.name for t in self.g.initializer] + [i.name for i in self.g.input]
        onnx_names += [o for n in self.g.node for o in n.output if o]
        for n in onnx_names:           # keep exact ONNX names first, sanitized ones after
            if n not in self.names and _sanitize(n) == n and n not in self.taken:
                self.names[n] = self.fresh(n)
        for n in onnx_names:
            if n not in self.names:
                self.names[n] = self.fresh(_sanitize(n))

    # ---- main ------------------------------------------------------------------------------
    def run(self, input_shapes: dict, fed_shapes: dict) -> Graph:
        self.opset = default_opset(self.model, self.label)
        self._check_supported()
        order = check_structure(self.g, self.label)
        self._assign_names()
        self._bind_inputs(input_shapes, fed_shapes)
        for t in self.g.initializer:
            arr = tensor_to_array(t, self.label)
            self.env[t.name] = Value(self.names[t.name], TensorType.of(arr), data=arr)
        node_names = set()
        for k in order:
            node = self.g.node[k]
            name = node_label(node, k)
            name = _sanitize(name if name not in node_names else f"{name}_{k}")
            node_names.add(name)
            results = self._convert(node, name)
            for onnx_name, v in zip(node.output, results):
                if onnx_name:
                    self.env[onnx_name] = v
        self._finish()
        return self.graph

    def _convert(self, node: onnx.NodeProto, name: str) -> list[Value]:
        try:
            return CONVERTERS[node.op_type].fn(NodeCtx(self, node, name))
        except EdgeccError:
            raise
        except Exception as e:   # malformed attributes etc.: name the node, never a traceback
            raise ModelError(f"{self.label}: node '{name}' ({node.op_type}): cannot be imported "
                             f"({type(e).__name__}: {str(e)[:200]})") from None

    def _check_supported(self):
        used = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}
        self.used = used
        problems = []
        for k, node in enumerate(self.g.node):
            where = f"node '{node_label(node, k)}' ({node.op_type})"
            if node.domain not in DEFAULT_DOMAINS and not (
                    node.domain == "com.microsoft" and node.op_type in MICROSOFT_OPS):
                problems.append(f"{where}: custom domain '{node.domain}' is not supported")
                continue
            hint = unsupported_hint(node, self.opset, used)
            if hint:
                problems.append(f"{where}: {hint}")
        if problems:
            raise UnsupportedOpsError(self.label, problems)

    def _bind_inputs(self, input_shapes: dict, fed_shapes: dict):
        inits = {t.name for t in self.g.initializer}
        real = [i for i in self.g.input if i.name not in inits]
        valid = [i.name for i in real]
        for name in input_shapes:
            if name not in valid:
                raise UsageError(f"{self.label}: {option('input_shapes')} names '{name}', but "
                                 f"the model's inputs are: {', '.join(valid) or '(none)'}")
        missing = []
        for i in real:
            if not i.type.HasField("tensor_type"):
                raise ModelError(f"{self.label}: input '{i.name}' is not a tensor; edgecc "
                                 f"supports tensor inputs only")
            tt = i.type.tensor_type
            dtype = onnx_to_dtype(tt.elem_type)
            if dtype is None:
                raise ModelError(f"{self.label}: input '{i.name}' has element type "
                                 f"{dtype_name(tt.elem_type)}, which edgecc does not support")
            declared = None
            if tt.HasField("shape"):
                declared = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                            for d in tt.shape.dim]
            if i.name in input_shapes:
                shape = self._check_binding(i.name, input_shapes[i.name], declared)
            elif (declared is None or None in declared) and i.name in fed_shapes:
                shape = self._check_binding(i.name, fed_shapes[i.name], declared,
                                            f"{option('inputs')} {i.name} (an array of shape "
                                            f"{list(fed_shapes[i.name])})")
            elif declared is None or None in declared:
                missing.append((i.name, declared))
                continue
            else:
                shape = tuple(declared)
            if math.prod(shape) > MAX_ELEMENTS:
                raise ModelError(f"{self.label}: input '{i.name}' of shape {list(shape)} has "
                                 f"more than 2^31 elements")
            v = Value(self.names[i.name], TensorType(dtype, shape))
            self.env[i.name] = v
            self.graph.inputs.append(v)
        if missing:     # a usage error, like a wrong binding: the model is fine
            flags = option("input_shapes", {n: _suggest(d) for n, d in missing})
            what = ", ".join(f"'{n}' {_show(d)}" for n, d in missing)
            raise UsageError(f"{self.label}: input(s) {what} have dynamic dims; bind them with "
                             f"{flags} (replace each <dK> by a size)")

    def _check_binding(self, name, dims, declared, flag=None) -> tuple[int, ...]:
        flag = flag or option("input_shapes", {name: list(dims)})
        try:
            shape = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise UsageError(f"{flag}: dims must be integers") from None
        if any(d <= 0 for d in shape):    # (a dim the model fixes to 0 needs no binding)
            raise UsageError(f"{flag}: dims must be positive")
        if declared is not None:
            if len(declared) != len(shape):
                raise UsageError(f"{flag}: input '{name}' has rank {len(declared)} "
                                 f"{_show(declared)}, the binding has rank {len(shape)}")
            for k, (d, s) in enumerate(zip(declared, shape)):
                if d is not None and d != s:
                    raise UsageError(f"{flag}: dim {k} of input '{name}' is fixed to {d} by the "
                                     f"model {_show(declared)}")
        return shape

    def shape_hint(self, v: Value) -> str:
        reason = self.fold_failed.get(v)
        if reason:
            return f"it could not be folded ({reason})"
        if v in self.graph.inputs:
            return (f"it is the graph input '{v.name}', fed at run time; edgecc needs it as a "
                    f"constant (store it as an initializer)")
        bound = option("input_shapes", {i.name: i.type.shape for i in self.graph.inputs})
        return (f"it depends on runtime data, not only on the input shapes ({bound}); "
                f"edgecc needs shapes known at compile time")

    # ---- building --------------------------------------------------------------------------
    def constant(self, array: np.ndarray, name: str, ctx: NodeCtx) -> Value:
        if array.dtype == np.dtype(object) or array.size > MAX_ELEMENTS:
            raise ctx.error(f"constant result {list(array.shape)} is not supported")
        try:
            t = TensorType.of(array)
        except ValueError as e:
            raise ctx.error(str(e)) from None
        return Value(name, t, data=_contiguous(array))

    def emit(self, ctx: NodeCtx, kind, inputs, attrs, outs, suffix, fold=True) -> list[Value]:
        name = ctx.name + suffix
        if outs is None:
            outs = [ctx.tmp(f"{name}_{kind}")]
        try:
            op = build_op(kind, inputs, attrs, name=name, out_names=outs)
        except OpRuleError as e:
            raise ctx.error(str(e)) from None
        for v in op.outputs:
            if v.type.numel > MAX_ELEMENTS:
                raise ctx.error(f"result %{v.name} would be {v.type} (more than 2^31 elements)")
        present = [v for v in inputs if v is not None]
        small = sum(v.type.numel for v in op.outputs) <= FOLD_MAX_ELEMENTS
        # a zero-element operand has one possible value: it counts as a constant (a reduction
        # over an empty set, Concat with an empty piece, ... fold to their defined results)
        if fold and present and small and all(v.data is not None or v.type.numel == 0
                                              for v in present):
            folded = self._fold(op, ctx)
            if folded is not None:
                return folded
        else:   # an operand whose folding failed explains why this result is not constant
            why = next((self.fold_failed[v] for v in present if v in self.fold_failed), None)
            if why:
                self.fold_failed.update((o, why) for o in op.outputs)
        self.graph.ops.append(op)
        return op.outputs

    def _fold(self, op, ctx) -> list[Value] | None:
        """Run an all-constant op with the reference kernels; None keeps it in the graph."""
        try:
            from edgecc.kernels import run_op
            arrays = run_op(op, [None if v is None else _const_or_empty(v) for v in op.inputs])
        except Exception as e:     # no kernel yet, or it failed: keep the op, say why later
            reason = f"{type(e).__name__}: {e}"[:200]
            for v in op.outputs:
                self.fold_failed[v] = f"folding {op.describe()} failed: {reason}"
            return None
        result = []
        for v, a in zip(op.outputs, arrays):
            a = np.asarray(a)
            if a.shape != v.type.shape or a.dtype != v.type.np_dtype:
                for o in op.outputs:
                    self.fold_failed[o] = (f"kernel for {op.kind} returned {a.dtype}{list(a.shape)}"
                                           f", expected {v.type}")
                return None
            result.append(Value(v.name, v.type, data=_contiguous(a)))
        return result

    def _finish(self):
        g = self.graph
        g.outputs = [self.env[o.name] for o in self.g.output]
        params, seen = [], set()
        for v in [v for op in g.ops for v in op.inputs] + g.outputs:
            if v is not None and v.data is not None and id(v) not in seen:
                seen.add(id(v))
                params.append(v)
        g.params = params
        verify_graph(g)
        g.onnx_node_count = len(self.g.node)
        g.onnx_opset = self.opset


def _contiguous(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)       # not np.ascontiguousarray: it turns a 0-d array into shape [1]
    return a if a.flags.c_contiguous else a.copy()


def _show(declared) -> str:
    if declared is None:
        return "[unknown rank]"
    return "[" + ",".join("?" if d is None else str(d) for d in declared) + "]"


def _suggest(declared) -> list[str]:
    if declared is None:
        return ["<d0>", "<d1>", "..."]
    return [str(d) if d is not None else ("1" if k == 0 else f"<d{k}>")
            for k, d in enumerate(declared)]


def _const_or_empty(v: Value) -> np.ndarray:
    return v.data if v.data is not None else np.empty(v.type.shape, v.type.np_dtype)
