"""Op definitions: one declaration per op kind with operands, attributes + defaults,
type/shape inference and a verifier rule.

    @opdef("LeakyRelu", inputs=["X"], attrs={"alpha": 0.01})
    def _leaky_relu(op):            # inference: returns the output types
        return [op.inputs[0].type]

Operand names ending in "?" are optional (None in op.inputs), a name ending in "*" is
variadic. Attributes whose default is REQUIRED must be given. Inference raises
`OpRuleError` with the rule that was broken; `check_op` turns it into a ModelError that
names the node. Op definitions live in compiler/ops/*.py and register on import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError
from .ir import Graph, Op, TensorType


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


class OpRuleError(Exception):
    """Raised by an inference function: the message states the broken rule."""


@dataclass(frozen=True)
class OpDef:
    kind: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any]
    outputs: int | str                  # a count, or "*" when the op decides (Split)
    infer: Callable[[Op], list[TensorType]]
    doc: str

    @property
    def min_inputs(self) -> int:
        return sum(1 for n in self.inputs if not n.endswith(("?", "*")))

    @property
    def variadic(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    def complete_attrs(self, attrs: dict[str, Any], where: str = "") -> dict[str, Any]:
        """attrs with defaults filled in; unknown or missing required attributes are errors."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise OpRuleError(f"unknown attribute(s) {unknown} for {self.kind}; "
                              f"known: {sorted(self.attrs)}")
        full = {}
        for name, default in self.attrs.items():
            if name in attrs:
                full[name] = attrs[name]
            elif default is REQUIRED:
                raise OpRuleError(f"{self.kind} requires attribute '{name}'")
            else:
                full[name] = default
        return full


OPS: dict[str, OpDef] = {}


def opdef(kind: str, inputs: list[str], attrs: dict[str, Any] | None = None,
          outputs: int | str = 1):
    def register(infer):
        assert kind not in OPS, f"op {kind} defined twice"
        OPS[kind] = OpDef(kind, tuple(inputs), dict(attrs or {}), outputs, infer,
                          (infer.__doc__ or "").strip())
        return infer
    return register


def get_opdef(kind: str) -> OpDef | None:
    _load_ops()
    return OPS.get(kind)


def _load_ops():
    if not OPS:
        from . import ops  # noqa: F401  (registers every op definition)


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
    return d.infer(op)


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
        if v.type.dtype != t.dtype or v.type.shape != t.shape:
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
    from .ir import Value
    d = get_opdef(kind)
    if d is None:
        raise OpRuleError(f"unknown op kind '{kind}'")
    from .ops import canonicalize_attrs
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
