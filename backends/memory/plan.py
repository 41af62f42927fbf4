"""Static memory planning of a whole graph into one arena — the entry point for the bundle.

    gp = plan_graph(graph, workspace={kernel: bytes})
    gp.order                  # run the kernels in this order (a topological reorder of graph.ops)
    gp.location("conv1_out")  # -> Location("arena", root, offset from the arena start)
                              #  | Location("input"/"param"/"output", root, 0)
    gp.is_noop(op)            # view / eliminated Concat: its result already sits in place
    gp.arena_bytes, gp.lower_bound_bytes, gp.naive_bytes
    enforce_max_arena(gp, limit)   # ResourceError (exit 4) naming the peak kernel

Pieces: memory_alloc (buffers -> offsets, strategies, checker), memory_liveness (graph ->
buffers, view aliases, in-place sharing, concat elimination, workspaces), memory_order
(memory-aware topological orders), memory_sim (runs a plan on a poisoned byte arena).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from edgecc.errors import ResourceError, option
from edgecc.ir import Graph, Op

from edgecc.backends.memory.alloc import (ALIGN, Buffer, Plan, PlanCheckError, align, check_plan,  # noqa: F401
                           live_bytes, lower_bound, plan_buffers)
from edgecc.backends.memory.liveness import Liveness, analyze, is_view, liveness  # noqa: F401
from edgecc.backends.memory.order import candidate_orders, choose_order  # noqa: F401


class Location(NamedTuple):
    kind: str      # "arena", "input", "param" or "output"
    root: str      # the value that owns the storage (for inputs/params/outputs: its name)
    offset: int    # bytes from the start of the arena (kind "arena"); 0 for the others
                   # (only arena buffers hold slices: operands of an eliminated Concat)


class Peak(NamedTuple):
    index: int                       # kernel position in the order
    op: Op | None
    bytes: int                       # live arena bytes there
    live: list[tuple[str, int]]      # (buffer, aligned bytes), largest first


@dataclass
class GraphPlan:
    order: list[Op]
    buffers: list[Buffer]
    aliases: dict[str, str]          # value -> root value whose storage it shares
    external: dict[str, str]         # value stored outside the arena -> input/param/output
    inplace: dict[str, str]          # result -> operand whose storage it overwrote
    workspace: dict[int, str]        # kernel position -> its workspace buffer
    offsets: dict[str, int]          # arena buffer (root or workspace) -> byte offset
    arena_bytes: int
    lower_bound_bytes: int
    naive_bytes: int
    strategy: str
    order_name: str
    live_bytes: list[int] = field(default_factory=list)   # per kernel position
    sub_offsets: dict[str, int] = field(default_factory=dict)  # value -> bytes into its root

    def location(self, value: str) -> Location:
        root = self.aliases.get(value, value)
        if value in self.external:
            return Location(self.external[value], root, self.sub_offsets.get(value, 0))
        if root not in self.offsets:
            raise KeyError(f"%{value} is not planned (not a value of this graph)")
        return Location("arena", root, self.offsets[root] + self.sub_offsets.get(value, 0))

    def workspace_offset(self, index: int) -> int | None:
        """Arena offset of the scratch of the kernel at position `index`, if it has one."""
        name = self.workspace.get(index)
        return None if name is None else self.offsets[name]

    def is_noop(self, op: Op) -> bool:
        """A view op whose result shares its operand's storage, or a Concat whose operands were
        written in place into its result: no code needed."""
        if not is_view(op) and op.kind != "Concat":
            return False
        ins = op.inputs[:1] if is_view(op) else op.inputs
        root = self.aliases.get(op.output.name, op.output.name)
        # each operand must sit exactly where the result expects it: sharing the storage is
        # not enough (a Concat of one value repeated lies inside another concat's buffer)
        at = self.sub_offsets.get(op.output.name, 0)
        for x in ins:
            if x is None or self.aliases.get(x.name, x.name) != root \
                    or self.sub_offsets.get(x.name, 0) != at:
                return False
            if not is_view(op):
                at += x.type.nbytes
        return True

    def peak(self) -> Peak:
        if not self.live_bytes or max(self.live_bytes) == 0:
            return Peak(-1, None, 0, [])
        t = max(range(len(self.live_bytes)), key=lambda i: (self.live_bytes[i], -i))
        live = sorted(((b.name, b.asize) for b in self.buffers if b.first <= t <= b.last),
                      key=lambda nb: (-nb[1], nb[0]))
        return Peak(t, self.order[t], self.live_bytes[t], live)

    def report(self) -> dict:
        """The report.json keys this planner owns."""
        return {"arena_bytes": self.arena_bytes,
                "arena_lower_bound_bytes": self.lower_bound_bytes,
                "naive_bytes": self.naive_bytes}


def _plan_order(graph: Graph, order: list[Op], name: str, workspace, inplace: bool,
                views: bool, concat) -> GraphPlan:
    lv: Liveness = analyze(graph, order, views=views, inplace=inplace, concat=concat,
                           workspace=workspace)
    plan: Plan = plan_buffers(lv.buffers)
    check_plan(lv.buffers, plan)
    return GraphPlan(lv.order, lv.buffers, lv.aliases, lv.external, lv.inplace, lv.workspace,
                     plan.offsets, plan.arena_bytes, plan.lower_bound_bytes, lv.naive_bytes,
                     plan.strategy, name, live_bytes(lv.buffers, len(order)), lv.sub_offsets)


def plan_graph(graph: Graph, workspace: dict | None = None, inplace: bool = True,
               reorder: bool = True, views: bool = True, concat: bool = True) -> GraphPlan:
    """Plan every intermediate tensor (and kernel workspace) of `graph` into one arena.

    workspace: {kernel: bytes}, kernel = index into graph.ops (original order) or the Op.
    With reorder, every candidate order is planned; with concat, each with and without concat
    elimination (which lengthens lifetimes). The smallest arena wins; ties go to the lower
    bound, then concat elimination (fewer copies), then the original order. When eliminating
    every Concat costs memory, the winner's Concats are eliminated one by one where that does
    not raise the lower bound. The returned plan has been checked by `check_plan`.
    """
    orders = candidate_orders(graph) if reorder else {"original": list(graph.ops)}
    best, best_elim = None, False
    for name, order in orders.items():
        for elim in ([True, False] if concat else [False]):
            gp = _plan_order(graph, order, name, workspace, inplace, views, elim)
            if best is None or (gp.arena_bytes, gp.lower_bound_bytes) < \
                    (best.arena_bytes, best.lower_bound_bytes):
                best, best_elim = gp, elim
    if concat and not best_elim and any(op.kind == "Concat" for op in best.order):
        chosen = _cheap_concats(graph, best.order, workspace, inplace, views)
        if chosen:
            gp = _plan_order(graph, best.order, best.order_name, workspace, inplace, views,
                             chosen)
            if gp.arena_bytes <= best.arena_bytes:
                best = gp
    return best


def _cheap_concats(graph, order, workspace, inplace, views) -> set[Op]:
    """Concats (in order) whose elimination does not raise the lower bound."""
    def bound(chosen):
        return lower_bound(analyze(graph, order, views=views, inplace=inplace, concat=chosen,
                                   workspace=workspace).buffers)
    chosen: set[Op] = set()
    current = bound(chosen)
    for op in order:
        if op.kind == "Concat" and bound(chosen | {op}) <= current:
            chosen.add(op)
    return chosen


def _fmt_live(live: list[tuple[str, int]], limit: int = 6) -> str:
    parts = [f"{name} ({nbytes} B)" for name, nbytes in live[:limit]]
    if len(live) > limit:
        parts.append(f"and {len(live) - limit} more")
    return ", ".join(parts)


def enforce_max_arena(plan: GraphPlan, limit: int | None, opt_level: int = 3) -> None:
    """Raise ResourceError (exit 4) when the arena exceeds `--max-arena limit`; the advice
    depends on what the build already does (fusion from -O2 on)."""
    if limit is None or plan.arena_bytes <= limit:
        return
    p = plan.peak()
    where = ""
    if p.op is not None:
        label = p.op.name or f"#{p.index}"
        kind = p.op.kind
        if kind == "Fused" and p.op.attrs.get("kernel"):
            kind = f"Fused {p.op.attrs['kernel']}"
        where = f"; peak at kernel '{label}' ({kind}) with live tensors {_fmt_live(p.live)}"
    if opt_level < 2:
        advice = (f"fusion keeps intermediates out of the arena: try "
                  f"{option('opt_level', 3)}, or a smaller input shape")
    else:
        advice = (f"the plan is at the lower bound of this graph's live tensors "
                  f"({plan.lower_bound_bytes} bytes)" if plan.arena_bytes <=
                  plan.lower_bound_bytes else f"the lower bound of this graph's live tensors "
                  f"is {plan.lower_bound_bytes} bytes")
        advice += "; a smaller input shape (fewer pixels or a smaller batch) needs less"
    raise ResourceError(f"arena needs {plan.arena_bytes} bytes > "
                        f"{option('max_arena', limit)}{where}; {advice}")
