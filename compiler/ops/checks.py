"""Building and verifying ops against their declarations (compiler/opdef.py).

    op = build_op("Conv", [x, w], {"strides": [2, 2]}, name="conv1")   # canonical, typed
    verify_graph(graph)                                                 # ModelError if not

Every op kind is registered by the time these run: this module is part of `edgecc.ops`,
whose import registers them all.
"""
from __future__ import annotations

from typing import Any

from ..errors import ModelError
from ..ir import Graph, Op, TensorType, Value
from ..opdef import OpRuleError, get_opdef
from .canonical import canonicalize_attrs


def infer_types(op: Op) -> list[TensorType]:
    """Output types of `op` from its input types and attributes (raises OpRuleError)."""
    d = get_opdef(op.kind)
    if d is None:
        raise OpRuleError(f"unknown op kind '{op.kind}'")
    n = len(op.inputs)
    if n < d.min_inputs or (not d.variadic and n > len(d.inputs)):
        raise OpRuleError(f"{op.kind} takes {d.min_inputs}..{len(d.inputs)} operands, got {n}")
    for i, (name, v) in enumerate(zip(d.inputs, op.inputs)):
        if v is None and not name.endswith(("?", "*")):
            raise OpRuleError(f"{op.kind} operand {i} ('{name}') is required")
    quantized = [v for v in op.inputs if v is not None and v.type.quant is not None]
    if quantized and not d.traits & {"quantized", "quant_transparent"}:
        first = quantized[0].type
        raise OpRuleError(f"{op.kind}: operand %{quantized[0].name} is quantized ({first.dtype}, "
                          f"scale {list(first.quant.scale)[:4]}); {op.kind} computes on real "
                          f"values: dequantize it first (DequantizeLinear)")
    return _keep_quantization(op, d, d.infer(op))


def _keep_quantization(op: Op, d, types: list[TensorType]) -> list[TensorType]:
    """Quantized operands: an integer op reads their parameters itself; an op that only moves
    values passes them on to its results (any other op was refused before inference)."""
    quantized = [v for v in op.inputs if v is not None and v.type.quant is not None]
    if not quantized or "quantized" in d.traits:
        return types
    first = quantized[0].type
    if first.quant.axis is not None:
        raise OpRuleError(f"{op.kind}: operand %{quantized[0].name} is quantized per axis; "
                          f"only per-tensor quantized values can be moved")
    for v in quantized[1:]:
        if v.type.quant != first.quant or v.type.dtype != first.dtype:
            raise OpRuleError(f"{op.kind}: quantized operands must share dtype, scale and zero "
                              f"point: %{quantized[0].name} {first.dtype} {first.quant} vs "
                              f"%{v.name} {v.type.dtype} {v.type.quant}")
    return [TensorType(t.dtype, t.shape, first.quant) if t.dtype == first.dtype else t
            for t in types]


def check_op(op: Op) -> None:
    """Verify one op: inference must succeed and agree with the recorded output types."""
    try:
        types = infer_types(op)
    except OpRuleError as e:
        raise ModelError(f"{_where(op)}: {e}") from None
    if len(types) != len(op.outputs):
        raise ModelError(f"{_where(op)}: produces {len(types)} result(s), "
                         f"graph has {len(op.outputs)}")
    for v, t in zip(op.outputs, types):
        if v.type.dtype != t.dtype or v.type.shape != t.shape or v.type.quant != t.quant:
            raise ModelError(f"{_where(op)}: result %{v.name} is declared {v.type} "
                             f"but the op produces {t}")


def verify_graph(graph: Graph) -> None:
    """Structural and type checks of a whole graph (raises ModelError)."""
    defined = set(graph.inputs) | set(graph.params)
    names: set[str] = set()
    for v in list(graph.inputs) + list(graph.params) + [o for op in graph.ops for o in op.outputs]:
        if v.name in names:
            raise ModelError(f"graph '{graph.name}': value %{v.name} is defined twice")
        names.add(v.name)
    for op in graph.ops:
        for v in op.inputs:
            if v is not None and v not in defined:
                raise ModelError(f"{_where(op)}: operand %{v.name} is not defined before use "
                                 f"(dangling input or cycle)")
        check_op(op)
        defined.update(op.outputs)
    for v in graph.outputs:
        if v not in defined:
            raise ModelError(f"graph '{graph.name}': output %{v.name} is never produced")


def _where(op: Op) -> str:
    return f"{op.loc}: {op.describe()}" if op.loc else op.describe()


def build_op(kind: str, inputs: list, attrs: dict[str, Any] | None = None, name: str = "",
             out_names: list[str] | None = None, loc: str | None = None) -> Op:
    """Create an op in canonical form: attributes completed, result types inferred.

    Raises OpRuleError when the op is malformed. `out_names` defaults to `<name>_out<i>`.
    """
    d = get_opdef(kind)
    if d is None:
        raise OpRuleError(f"unknown op kind '{kind}'")
    full = d.complete_attrs(attrs or {})
    in_types = [None if v is None else v.type for v in inputs]
    full = canonicalize_attrs(kind, full, in_types, len(out_names) if out_names else None)
    op = Op(kind, inputs, [], full, name, loc)
    types = infer_types(op)
    names = out_names or [f"{name or kind}_out{i}" for i in range(len(types))]
    if len(names) != len(types):
        raise OpRuleError(f"{kind} produces {len(types)} result(s), {len(names)} named")
    op.outputs = [Value(n, t, op) for n, t in zip(names, types)]
    return op


def is_noop(op: Op) -> bool:
    """Whether op's single result equals its first operand (its declaration's noop hook)."""
    d = get_opdef(op.kind)
    return bool(d and d.noop and len(op.outputs) == 1 and op.inputs and op.inputs[0] is not None
                and op.inputs[0].type.shape == op.output.type.shape and d.noop(op))
