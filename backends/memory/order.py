"""Execution order: a topological order of the kernels that lowers peak live memory.

Branchy graphs (Inception, DenseNet, detection heads) leave freedom in which branch runs first;
the original file order is often not the cheapest. Candidates: the original order and greedy
memory-aware list schedules (among the ready kernels pick the one that frees the most / allocates
the least). The caller keeps the candidate whose plan is smallest. Reordering never changes
results: every candidate is a topological order of the same ops.
"""
from __future__ import annotations

from typing import Callable

from edgecc.ir import Graph, Op, Value

from edgecc.backends.memory.alloc import align
from edgecc.backends.memory.liveness import is_view


def _storage_groups(graph: Graph) -> tuple[dict[Value, Value], dict[Value, int]]:
    """Order-independent view groups: value -> group key, key -> arena bytes (0 if external)."""
    key: dict[Value, Value] = {}

    def find(v):
        while key.setdefault(v, v) is not v:
            v = key[v]
        return v
    for op in graph.ops:
        if is_view(op) and op.inputs and op.inputs[0] is not None:
            key[find(op.output)] = find(op.inputs[0])
    external = set(graph.inputs) | set(graph.params) | set(graph.outputs)
    size: dict[Value, int] = {}
    for op in graph.ops:
        for v in op.outputs:
            size.setdefault(find(v), align(v.type.nbytes))
    for v in external:
        size[find(v)] = 0
    return {v: find(v) for v in list(key) + list(external)
            + [o for op in graph.ops for o in op.outputs]}, size


def greedy_order(graph: Graph, score: Callable[[int, int, int], tuple]) -> list[Op]:
    """List scheduling: repeatedly run the ready op minimising score(alloc, free, index)."""
    group, size = _storage_groups(graph)
    reads = [{group[v] for v in op.inputs if v is not None} for op in graph.ops]
    remaining: dict[Value, int] = {}
    for r in reads:
        for g in r:
            remaining[g] = remaining.get(g, 0) + 1
    for v in graph.outputs:                       # outputs are never freed
        remaining[group[v]] = remaining.get(group[v], 0) + 1
    producer = {v: i for i, op in enumerate(graph.ops) for v in op.outputs}
    waiting = [sum(1 for v in set(op.inputs) if v is not None and v in producer)
               for op in graph.ops]
    users: dict[int, list[int]] = {}
    for i, op in enumerate(graph.ops):
        for v in set(op.inputs):
            if v is not None and v in producer:
                users.setdefault(producer[v], []).append(i)
    allocated: set[Value] = set()
    ready = {i for i, w in enumerate(waiting) if w == 0}
    order: list[Op] = []
    while ready:
        def cost(i):
            new = {group[v] for v in graph.ops[i].outputs} - allocated
            alloc = sum(size[g] for g in new)
            free = sum(size[g] for g in reads[i] if remaining[g] == 1)
            return score(alloc, free, i)
        i = min(ready, key=cost)
        ready.remove(i)
        order.append(graph.ops[i])
        allocated.update(group[v] for v in graph.ops[i].outputs)
        for g in reads[i]:
            remaining[g] -= 1
        for u in users.get(i, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.add(u)
    if len(order) != len(graph.ops):
        raise ValueError(f"graph '{graph.name}' has a cycle; cannot order its kernels")
    return order


ORDERINGS: dict[str, Callable[[Graph], list[Op]]] = {
    "original": lambda g: list(g.ops),
    # net growth of live bytes first, then the original position
    "greedy_net": lambda g: greedy_order(g, lambda a, f, i: (a - f, i)),
    # smallest allocation first (keeps the peak at this step low), then the most freed
    "greedy_alloc": lambda g: greedy_order(g, lambda a, f, i: (a, -f, i)),
}


def candidate_orders(graph: Graph) -> dict[str, list[Op]]:
    """Distinct candidate orders by name (the original first)."""
    out: dict[str, list[Op]] = {}
    seen = set()
    for name, make in ORDERINGS.items():
        order = make(graph)
        sig = tuple(map(id, order))
        if sig not in seen:
            seen.add(sig)
            out[name] = order
    return out


def choose_order(graph: Graph, **analyze_options) -> list[Op]:
    """The candidate order with the lowest liveness lower bound (ties: the earlier candidate)."""
    from edgecc.backends.memory.alloc import lower_bound
    from edgecc.backends.memory.liveness import analyze
    best = None
    for order in candidate_orders(graph).values():
        lb = lower_bound(analyze(graph, order, **analyze_options).buffers)
        if best is None or lb < best[0]:
            best = (lb, order)
    return best[1]
