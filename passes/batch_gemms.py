"""batch-gemms: Gemms / MatMuls that share a constant weight and do not depend on each other
run as one GEMM over their stacked rows.

    Gemm(a_i, W, c) for i = 1..n  →  Split_rows(Gemm(Concat_rows(a_1..a_n), W, c))

A recurrent net exported unrolled (PyTorch's LSTM/GRU as Gemm + gates per time step) projects
every step's input with the same weight: n products of one row each, every one reading the
whole weight from memory (the CRNN's 4096x400 input projection: 6.5 MB, 20 steps x 2
directions, ~2/3 of the model's time). Batched, the weight is read once and the product is a
real matrix multiply. The recurrent products (h_{t-1} · R) depend on each other and stay.

When the rows are the in-order slices of one tensor (Gather(x, t) for t = 0..n-1, in any
order: the reverse direction reads them backwards) the stacked input is a Reshape of that
tensor (a view), not a Concat. A group is batched only when the weight reads it saves exceed
the copies it adds (the Concat of the rows, the Split of the result).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from edgecc.ir import Graph, Op, Value
from edgecc.ops import build_op, has_trait
from edgecc.pass_registry import register_pass

from ._rewrite import const, per_channel, record_refusal


@register_pass
@dataclass(frozen=True)
class BatchGemms:
    name = "batch-gemms"
    tolerance = 1e-5              # the same dot products (summation order may differ)

    def run(self, graph: Graph, ctx) -> bool:
        groups: dict[tuple, list[Op]] = defaultdict(list)
        for op in graph.ops:
            key = _group_key(op)
            if key is not None:
                groups[key].append(op)
        changed = False
        for members in groups.values():
            if len(members) < 2:
                continue
            free = _independent(graph, members)
            if len(free) < 2:
                continue
            if not _saves_traffic(free):
                record_refusal(ctx, self.name, free[0],
                               f"{len(free)} products sharing the weight: batching would copy "
                               f"more bytes than the weight reads it saves")
                continue
            _batch(graph, free)
            changed = True
        if changed:
            graph.topo_sort()
        return changed


def _group_key(op: Op) -> tuple | None:
    """Ops with equal keys compute row-independent products with the same weight and bias."""
    if op.kind not in ("Gemm", "MatMul") or has_trait(op, "quantized") or len(op.outputs) != 1:
        return None
    a, w = op.inputs[0], op.inputs[1]
    if a.type.dtype != "f32" or a.type.rank != 2 or const(w) is None or w.type.rank != 2:
        return None
    if op.kind == "MatMul":
        return ("MatMul", w)
    attrs = op.attrs
    if int(attrs["transA"]):
        return None
    c = op.inputs[2] if len(op.inputs) > 2 else None
    # a bias that varies along the rows would differ per member; one along the columns is shared
    if c is not None and (const(c) is None or
                          not per_channel(c.type.shape, op.output.type.shape, axis=1)):
        return None
    return ("Gemm", w, c, float(attrs["alpha"]), float(attrs["beta"]), int(attrs["transB"]))


def _independent(graph: Graph, members: list[Op]) -> list[Op]:
    """The members none of whose inputs is computed from another member's result."""
    group = set(members)
    tainted: set[Value] = set()          # values computed from some member's result
    free = []
    for op in graph.ops:
        from_member = any(v in tainted for v in op.inputs if v is not None)
        if op in group and not from_member:
            free.append(op)
        if op in group or from_member:
            tainted.update(op.outputs)
    return free


def _saves_traffic(ops: list[Op]) -> bool:
    weight = ops[0].inputs[1].type.nbytes
    copies = sum(op.inputs[0].type.nbytes + op.output.type.nbytes for op in ops)
    return (len(ops) - 1) * weight > copies


def _time_slices(ops: list[Op]) -> tuple[Value, list[Op]] | None:
    """(x, ops ordered by t) when op i reads Gather(x, t_i, axis=0) with the t_i covering
    0..len(x)-1 and x[t] shaped like the rows: then Reshape(x) stacks the rows."""
    xs, index = set(), {}
    for op in ops:
        g = op.inputs[0].producer
        if g is None or g.kind != "Gather" or int(g.attrs["axis"]) != 0:
            return None
        t = const(g.inputs[1])
        if t is None or t.size != 1:
            return None
        x = g.inputs[0]
        xs.add(x)
        t = int(np.asarray(t).reshape(-1)[0]) % x.type.shape[0]
        index[op] = t            # x[t] is exactly the op's rows (Gather of a scalar index)
    if len(xs) != 1:
        return None
    x = xs.pop()
    if sorted(index.values()) != list(range(x.type.shape[0])):
        return None
    return x, sorted(ops, key=index.get)


def _batch(graph: Graph, ops: list[Op]) -> None:
    first = ops[0]
    sliced = _time_slices(ops)
    if sliced is not None:
        x, ops = sliced
    rows = [op.inputs[0].type.shape[0] for op in ops]
    if sliced is not None:
        stack = build_op("Reshape", [x], {"shape": [sum(rows), first.inputs[0].type.shape[1]]},
                         name=f"{first.name}/rows", out_names=[graph.fresh_name(f"{x.name}_rows")])
    else:
        stack = build_op("Concat", [op.inputs[0] for op in ops], {"axis": 0},
                         name=f"{first.name}/rows",
                         out_names=[graph.fresh_name(f"{first.inputs[0].name}_rows")])
    product = build_op(first.kind, [stack.output] + list(first.inputs[1:]), dict(first.attrs),
                       name=f"{first.name}/batched",
                       out_names=[graph.fresh_name(f"{first.output.name}_batched")])
    split = build_op("Split", [product.output], {"axis": 0, "split": rows},
                     name=f"{first.name}/unbatch",
                     out_names=[graph.fresh_name(op.output.name) for op in ops])
    graph.ops.extend([stack, product, split])
    for op, piece in zip(ops, split.outputs):
        old = op.output
        graph.replace_all_uses(old, piece)
        old.name, piece.name = f"{old.name}.dead", old.name
        graph.ops.remove(op)
