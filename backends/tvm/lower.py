"""Lowering of canonical ops to TVM tensor expressions, one PrimFunc per kernel.

    func = lower_kernel(op, "k3")        # a scheduled tvm.tirx.PrimFunc named k3

A kernel is one top-level op. Its arguments are the op's present operands (in operand order)
then its results. A `Fused` op is ONE kernel: the TE computes of its body ops are composed and
the intermediate stages are inlined by the scheduler (backends/tvm_schedule.py). View ops
(the "view" trait) need no kernel at top level: the host aliases the bytes; inside a Fused body they
are ordinary index remappings.

Each op kind's rule lives in one family file (backends/lower_*.py) and registers with

    @lowering("Relu")
    def _relu(op, ins):       # ins: te.Tensor | None per operand; returns one tensor per result
        ...

Rules read result shapes/dtypes from op.outputs (the IR's types are authoritative) and
canonical attributes from op.attrs.
"""
from __future__ import annotations

from typing import Callable

from edgecc.dtypes import dtype_to_tvm
from edgecc.errors import ModelError
from edgecc.ir import Op
from edgecc.ops import has_trait


Rule = Callable[[Op, list], list]
LOWERINGS: dict[str, Rule] = {}



def lowering(*kinds: str):
    def register(fn: Rule) -> Rule:
        for kind in kinds:
            assert kind not in LOWERINGS, f"lowering for {kind} registered twice"
            LOWERINGS[kind] = fn
        return fn
    return register


def tvm_dtype(short: str) -> str:
    return dtype_to_tvm(short)


def _load() -> None:
    # always import (cached by Python): one lowering module imported on its own elsewhere
    # must not make the others look registered
    from . import (lower_data, lower_elementwise, lower_nn, lower_pool,  # noqa: F401
                   lower_rnn)


def supported_kinds() -> frozenset[str]:
    _load()
    return frozenset(LOWERINGS) | {"Fused"}


def is_view(op: Op) -> bool:
    return has_trait(op, "view")


def unsupported(ops: list[Op]) -> list[str]:
    """Descriptions of the ops (Fused bodies included) that have no lowering."""
    _load()
    bad = []
    for op in ops:
        if op.kind == "Fused":
            bad += unsupported(op.attrs["body"].ops)
        elif op.kind not in LOWERINGS:
            bad.append(f"{op.describe()}: no TVM lowering for '{op.kind}'")
    return bad


def compute_op(op: Op, ins: list) -> list:
    """The TE tensors of `op`'s results given TE tensors (or None) for its operands."""
    _load()
    if op.kind == "Fused":
        return _compute_fused(op, ins)
    rule = LOWERINGS.get(op.kind)
    if rule is None:
        raise ModelError(f"{op.describe()}: no TVM lowering for '{op.kind}'")
    outs = rule(op, ins)
    assert len(outs) == len(op.outputs), op.kind
    return outs


def _compute_fused(op: Op, ins: list) -> list:
    body = op.attrs["body"]
    if body.params:
        raise ModelError(f"{op.describe()}: Fused body holds weights "
                         f"({', '.join(p.name for p in body.params)}); they must be operands")
    env = dict(zip(body.inputs, ins))
    for inner in body.ops:
        args = [None if v is None else env[v] for v in inner.inputs]
        for v, t in zip(inner.outputs, compute_op(inner, args)):
            env[v] = t
    return [env[v] for v in body.outputs]


def lower_kernel(op: Op, func_name: str):
    """A scheduled PrimFunc computing `op`, with global symbol `func_name`.

    f16 tensors are computed in f32 (loaded, widened, narrowed on store), like the reference
    executor; an explicit Cast to f16 still rounds."""
    from edgecc.backends.tvm.schedule import schedule
    func = schedule(kernel_prim_func(op), anchor_kind(op))
    return func.with_attr("global_symbol", func_name)


def kernel_prim_func(op: Op):
    """The unscheduled PrimFunc of `op` (te.create_prim_func): what lower_kernel schedules,
    and the workload MetaSchedule tunes (backends/tune.py)."""
    from tvm import te
    work = _promote_f16(op) if _uses_f16(op) else op
    placeholders, ins = [], []
    for i, v in enumerate(op.inputs):
        if v is None:
            ins.append(None)
            continue
        p = te.placeholder(v.type.shape, tvm_dtype(v.type.dtype), name=f"in{i}")
        placeholders.append(p)
        ins.append(p if v.type.dtype != "f16" else _cast(p, "float32", f"in{i}_f32"))
    outs = compute_op(work, ins)
    outs = [t if v.type.dtype != "f16" else _cast(t, "float16", f"out{i}_f16")
            for i, (v, t) in enumerate(zip(op.outputs, outs))]
    # Every result needs its own computed buffer (a result may alias an operand or another
    # result, e.g. a Fused body whose output is its input).
    seen = set(placeholders)
    final = []
    for i, t in enumerate(outs):
        if t in seen or not isinstance(t.op, te.ComputeOp):
            t = copy_tensor(t, f"out{i}_copy")
        seen.add(t)
        final.append(t)
    return te.create_prim_func(placeholders + final)


def _cast(t, dtype: str, name: str):
    from tvm import te
    return te.compute(t.shape, lambda *i: t(*i).astype(dtype), name=name)


def _uses_f16(op: Op) -> bool:
    vals = [v for v in op.inputs + op.outputs if v is not None]
    if op.kind == "Fused":
        vals += [v for inner in op.attrs["body"].ops for v in inner.inputs + inner.outputs
                 if v is not None]
    return any(v.type.dtype == "f16" for v in vals)


def _promote_f16(op: Op) -> Op:
    """A copy of `op` (and its Fused body) whose f16 values are f32."""
    from edgecc.ir import Graph, TensorType, Value
    mapping: dict[int, Value] = {}

    def conv(v):
        if v is None:
            return None
        if id(v) not in mapping:
            t = v.type
            mapping[id(v)] = Value(v.name, TensorType("f32", t.shape) if t.dtype == "f16"
                                   else t, data=v.data)
        return mapping[id(v)]

    def copy(o: Op) -> Op:
        attrs = dict(o.attrs)
        if o.kind == "Fused":
            body = attrs["body"]
            new_body = Graph(body.name, [conv(v) for v in body.inputs])
            new_body.ops = [copy(inner) for inner in body.ops]
            new_body.outputs = [conv(v) for v in body.outputs]
            attrs["body"] = new_body
        return Op(o.kind, [conv(v) for v in o.inputs], [conv(v) for v in o.outputs], attrs,
                  o.name, o.loc)
    return copy(op)


def copy_tensor(t, name: str):
    from tvm import te
    return te.compute(t.shape, lambda *i: t(*i), name=name)


def anchor_kind(op: Op) -> str:
    """The op kind a kernel's schedule is chosen by: its first non-elementwise op (a
    LayoutTransform feeding a blocked Conv is that conv's prologue, a Slice a reduction
    reads through is the reduction's)."""
    ops = op.attrs["body"].ops if op.kind == "Fused" else [op]
    kinds = [inner.kind for inner in ops
             if not has_trait(inner, "elementwise") and not has_trait(inner, "view")
             and not (inner.kind == "LayoutTransform" and len(ops) > 1)]
    if kinds[:1] == ["Slice"] and len(kinds) > 1:
        return kinds[1]           # a Slice a reduction reads through (fuse-kernels)
    return kinds[0] if kinds else ops[0].kind if ops else op.kind
