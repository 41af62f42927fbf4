"""Shared helpers for rewrite passes: constants, use counts, forwarding values, pruning.

Passes never mutate weight arrays in place (graphs share them after `Graph.clone`); they make
new params with `graph.add_param`.
"""
from __future__ import annotations

import math

import numpy as np

from edgecc.dtypes import FLOAT_DTYPES  # noqa: F401  (re-exported for the passes)
from edgecc.ir import Graph, Op, Value
from edgecc.ops import build_op


# Tolerance of rewrites that only change float rounding (ulps per element), amplified by deep
# nets: 1.6e-5 measured on ppocr_det, whose sigmoid output is ~1e-5 in scale on random inputs.
ROUNDING_TOLERANCE = 5e-5


def const(v: Value | None) -> np.ndarray | None:
    """The array of a weight operand, None for activations and omitted operands."""
    return None if v is None or v.data is None else v.data


def scalar(v: Value | None) -> float | None:
    """The value of a constant whose elements are all equal (a broadcast scalar), else None."""
    a = const(v)
    if a is None or a.size == 0:
        return None
    first = a.reshape(-1)[0]
    if not np.all(a == first):
        return None
    return float(first)


def is_close(x: float | None, want: float, rel: float = 1e-6) -> bool:
    return x is not None and math.isclose(x, want, rel_tol=rel, abs_tol=rel * 1e-3)


def single_user(users: dict[Value, list[Op]], graph: Graph, v: Value) -> Op | None:
    """The one op reading `v` (once), provided `v` is not also a graph output."""
    readers = users.get(v, [])
    if len(readers) != 1 or v in graph.outputs:
        return None
    return readers[0]


def can_forward(graph: Graph, old: Value, new: Value) -> bool:
    """Whether every use of `old` may read `new` instead. A graph output keeps its name, so
    an output can only be forwarded from a value we are free to rename: an op result that is
    not itself an output (and not an input or weight)."""
    if old.type.dtype != new.type.dtype or old.type.shape != new.type.shape:
        return False
    if old in graph.outputs:
        return new.producer is not None and new not in graph.outputs
    return True


def forward(graph: Graph, old: Value, new: Value) -> None:
    """Make every reader of `old` (and the graph outputs) read `new`; check can_forward first.
    When `old` is a graph output, `new` takes over its name (the op producing `old` must then
    be removed, which `prune` does)."""
    assert can_forward(graph, old, new), (old, new)
    if old in graph.outputs:
        old.name, new.name = f"{old.name}.dead", old.name
    graph.replace_all_uses(old, new)


def remove_dead_ops(graph: Graph) -> bool:
    """One backward sweep: keep an op iff it feeds a live value. Returns whether ops changed."""
    live = set(graph.outputs)
    kept = []
    for op in reversed(graph.ops):
        if any(v in live for v in op.outputs):
            kept.append(op)
            live.update(v for v in op.inputs if v is not None)
    changed = len(kept) != len(graph.ops)
    graph.ops = kept[::-1]
    return changed


def prune(graph: Graph) -> int:
    """Delete ops whose results nobody reads and weights nobody uses; returns ops removed."""
    n = len(graph.ops)
    remove_dead_ops(graph)
    graph.remove_unused_params()
    return n - len(graph.ops)


def insert_before(graph: Graph, anchor: Op, new_ops: list[Op]) -> None:
    """Place `new_ops` (in order) right before `anchor` in the op list."""
    i = graph.ops.index(anchor)
    graph.ops[i:i] = new_ops


def per_channel(shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int = 1) -> bool:
    """Whether a constant of `shape`, broadcast against a result of `out_shape`, varies at
    most along `axis` (and leaves the result shape unchanged)."""
    if len(shape) > len(out_shape):
        return False
    offset = len(out_shape) - len(shape)
    for i, d in enumerate(shape):
        j = i + offset
        if d != 1 and not (j == axis and d == out_shape[axis]):
            return False
    return True


def channel_vector(a: np.ndarray, out_shape: tuple[int, ...], axis: int = 1) -> np.ndarray:
    """A per-channel constant (see per_channel) as a 1-D vector of length out_shape[axis]."""
    shape = (1,) * (len(out_shape) - a.ndim) + a.shape
    full = [1] * len(out_shape)
    full[axis] = out_shape[axis]
    return np.broadcast_to(a.reshape(shape), full).reshape(-1)


def record_refusal(ctx, pass_name: str, op: Op, reason: str) -> None:
    """Note why `pass_name` left `op` alone, for --print-refusals style reports and tests.

    The context may offer `refuse(pass_name, op, reason)`; otherwise a list `ctx.refusals`
    of (pass, op description, reason) is kept."""
    if ctx is None:
        return
    hook = getattr(ctx, "refuse", None)
    if callable(hook):
        hook(pass_name, op, reason)
        return
    if not hasattr(ctx, "refusals"):
        try:
            ctx.refusals = []
        except AttributeError:
            return
    ctx.refusals.append((pass_name, op.describe(), reason))


def replace(graph: Graph, op: Op, new_ops: list[Op], results: list[Value]) -> bool:
    """Replace `op` by `new_ops` (placed where `op` was) whose values `results` stand for
    op.outputs; False (graph untouched) when a result cannot be forwarded."""
    pairs = list(zip(op.outputs, results))
    if not all(can_forward(graph, old, new) for old, new in pairs):
        return False
    insert_before(graph, op, new_ops)
    for old, new in pairs:
        forward(graph, old, new)
    graph.ops.remove(op)
    for old, new in pairs:        # new results inherit the names they stand for
        if new.producer in new_ops and new not in graph.outputs:
            old.name, new.name = f"{old.name}.dead", old.name
    return True


def num_uses(graph: Graph, v: Value) -> int:
    """Reads of `v` by ops plus one if it is a graph output."""
    return sum(1 for op in graph.ops for x in op.inputs if x is v) + (v in graph.outputs)


def suffixed(name: str, suffix: str) -> str:
    """`name` + `suffix`, without stacking the suffix when a rewrite repeats."""
    return name if name.endswith(suffix) else name + suffix


def settle_names(graph: Graph, values: list[Value], names: list[str]) -> None:
    """Give new weights their intended names once the weights they replaced are gone (while
    both existed, add_param had to pick `name_1`)."""
    taken = {v.name for v in graph.values()}
    for v, name in zip(values, names):
        if v.name != name and name not in taken:
            v.name = name
            taken.add(name)


def replace_with_folded(graph: Graph, op: Op, absorbed: Op, template: Op, x: Value,
                        weights: list[np.ndarray], names: list[str], attrs: dict) -> Op | None:
    """Replace `op` by a `template.kind` op (named like `template`, with `attrs`) reading `x`
    and the new weights `weights` (wanted names `names`), and delete `absorbed`, the op folded
    into it. Returns the new op; None, with the graph untouched, when its result cannot stand
    for op's."""
    params = [graph.add_param(n, a) for n, a in zip(names, weights)]
    new = build_op(template.kind, [x, *params], attrs, name=template.name,
                   out_names=[graph.fresh_name(template.output.name)])
    if new.output.type != op.output.type or not replace(graph, op, [new], [new.output]):
        for p in params:
            graph.params.remove(p)
        return None
    graph.ops.remove(absorbed)
    graph.remove_unused_params()
    settle_names(graph, params, names)
    return new
