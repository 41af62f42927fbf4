"""Lowering of canonical ops to TVM tensor expressions, one PrimFunc per kernel.

    func = lower_kernel(op, "k3", target)   # a scheduled tvm.tirx.PrimFunc named k3

A kernel is one top-level op. Its arguments are the op's present operands (in operand order)
then its results. A `Fused` op is ONE kernel: the TE computes of its body ops are composed and
the intermediate stages are inlined by the scheduler (schedule.py). View ops (the "view"
trait) need no kernel at top level: the host aliases the bytes; inside a Fused body they are
ordinary index remappings.

Each op kind's rule lives in one family file (lower_*.py) and registers in te_rules.py:

    @lowering("Relu")
    def _relu(op, ins, target):   # ins: te.Tensor | None per operand; one tensor per result
        ...
"""
from __future__ import annotations

from collections import Counter

from edgecc.backends.tvm import (lower_data, lower_elementwise, lower_nn,  # noqa: F401
                                 lower_pool, lower_quant, lower_rnn, lower_sample)
from edgecc.backends.tvm.lower_elementwise import EXPANSION
from edgecc.backends.tvm.primitives import MATERIALIZED, ScheduleContext
from edgecc.backends.tvm.schedule import schedule
from edgecc.backends.tvm.te_rules import LOWERINGS, tvm_dtype
from edgecc.errors import ModelError
from edgecc.ir import Op
from edgecc.ops import has_trait
from edgecc.target import Target


def supported_kinds() -> frozenset[str]:
    return frozenset(LOWERINGS) | {"Fused"}


def is_view(op: Op) -> bool:
    return has_trait(op, "view")


def unsupported(ops: list[Op]) -> list[str]:
    """Descriptions of the ops (Fused bodies included) that have no lowering."""
    bad = []
    for op in ops:
        if op.kind == "Fused":
            bad += unsupported(op.attrs["body"].ops)
        elif op.kind not in LOWERINGS:
            bad.append(f"{op.describe()}: no TVM lowering for '{op.kind}'")
    return bad


def compute_op(op: Op, ins: list, target: Target) -> list:
    """The TE tensors of `op`'s results given TE tensors (or None) for its operands."""
    if op.kind == "Fused":
        return _compute_fused(op, ins, target)
    rule = LOWERINGS.get(op.kind)
    if rule is None:
        raise ModelError(f"{op.describe()}: no TVM lowering for '{op.kind}'")
    outs = rule(op, ins, target)
    assert len(outs) == len(op.outputs), op.kind
    return outs


def _compute_fused(op: Op, ins: list, target: Target) -> list:
    body = op.attrs["body"]
    if body.params:
        raise ModelError(f"{op.describe()}: Fused body holds weights "
                         f"({', '.join(p.name for p in body.params)}); they must be operands")
    env = dict(zip(body.inputs, ins))
    growth = Counter()        # value -> (operand reads x expansion) summed over its readers
    for inner in body.ops:
        for v in inner.inputs:
            if v is not None:
                growth[v] += EXPANSION.get(inner.kind, 1)
    size = {}                 # value -> estimated nodes of its inlined expression
    for inner in body.ops:
        args = [None if v is None else env[v] for v in inner.inputs]
        for v, t in zip(inner.outputs, compute_op(inner, args, target)):
            size[v] = 1 if _is_reduction(t) else \
                EXPANSION.get(inner.kind, 1) * (1 + sum(size.get(a, 1) for a in inner.inputs))
            if size[v] * growth[v] > EXPRESSION_LIMIT:
                # computed once into a buffer: inlined, its expression would be copied into
                # every reader's; chains of such ops grow exponentially (LLVM took minutes)
                t, size[v] = copy_tensor(t, f"{MATERIALIZED}{len(env)}"), 1
            env[v] = t
    return [env[v] for v in body.outputs]


EXPRESSION_LIMIT = 300        # nodes per inlined expression (an exp of a small operand: ~100)


def _is_reduction(t) -> bool:
    from tvm import te
    return isinstance(t.op, te.ComputeOp) and len(t.op.reduce_axis) > 0


def lower_kernel(op: Op, func_name: str, target: Target, lean: bool = False):
    """A scheduled PrimFunc computing `op` for `target`, with global symbol `func_name`
    (`lean`: scratch-free schedules, see primitives.ScheduleContext).

    f16 tensors are computed in f32 (loaded, widened, narrowed on store), like the reference
    executor; an explicit Cast to f16 still rounds."""
    func = schedule(kernel_prim_func(op, target), anchor_kind(op), ScheduleContext(target, lean))
    return func.with_attr("global_symbol", func_name)


def kernel_prim_func(op: Op, target: Target):
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
    outs = compute_op(work, ins, target)
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
