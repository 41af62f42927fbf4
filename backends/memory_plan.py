"""Static memory planning of a whole graph into one arena — the entry point for the bundle.

    gp = plan_graph(graph, workspace={kernel: bytes})
    gp.order                  # run the kernels in this order (a topological reorder of graph.ops)
    gp.location("conv1_out")  # -> Location("arena", root, offset) | ("input"/"param"/"output", root, 0)
    gp.is_noop(op)            # view op aliasing its operand: emit no code
    gp.arena_bytes, gp.lower_bound_bytes, gp.naive_bytes
    enforce_max_arena(gp, limit)   # ResourceError (exit 4) naming the peak kernel

Pieces: memory_alloc (buffers -> offsets, strategies, checker), memory_liveness (graph -> buffers,
view aliases, in-place sharing, workspaces), memory_order (memory-aware topological orders).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from edgecc.errors import ResourceError
from edgecc.ir import Graph, Op

from .memory_alloc import (ALIGN, Buffer, Plan, PlanCheckError, align, check_plan,  # noqa: F401
                           live_bytes, lower_bound, plan_buffers)
from .memory_liveness import VIEW_OPS, Liveness, analyze, liveness  # noqa: F401
from .memory_order import candidate_orders, choose_order  # noqa: F401


class Location(NamedTuple):
    kind: str      # "arena", "input", "param" or "output"
    root: str      # the value that owns the storage (for inputs/params/outputs: its name)
    offset: int    # byte offset into the arena (0 unless kind == "arena")


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

    def location(self, value: str) -> Location:
        root = self.aliases.get(value, value)
        if value in self.external:
            return Location(self.external[value], root, 0)
        if root not in self.offsets:
            raise KeyError(f"%{value} is not planned (not a value of this graph)")
        return Location("arena", root, self.offsets[root])

    def workspace_offset(self, index: int) -> int | None:
        """Arena offset of the scratch of the kernel at position `index`, if it has one."""
        name = self.workspace.get(index)
        return None if name is None else self.offsets[name]

    def is_noop(self, op: Op) -> bool:
        """A view op whose result shares its operand's storage: no code needed."""
        return op.kind in VIEW_OPS and self.aliases.get(op.output.name, op.output.name) == \
            self.aliases.get(op.inputs[0].name, op.inputs[0].name)

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
                views: bool) -> GraphPlan:
    lv: Liveness = analyze(graph, order, views=views, inplace=inplace, workspace=workspace)
    plan: Plan = plan_buffers(lv.buffers)
    check_plan(lv.buffers, plan)
    return GraphPlan(lv.order, lv.buffers, lv.aliases, lv.external, lv.inplace, lv.workspace,
                     plan.offsets, plan.arena_bytes, plan.lower_bound_bytes, lv.naive_bytes,
                     plan.strategy, name, live_bytes(lv.buffers, len(order)))


def plan_graph(graph: Graph, workspace: dict | None = None, inplace: bool = True,
               reorder: bool = True, views: bool = True) -> GraphPlan:
    """Plan every intermediate tensor (and kernel workspace) of `graph` into one arena.

    workspace: {kernel: bytes}, kernel = index into graph.ops (original order) or the Op.
    With reorder, every candidate order is planned and the smallest arena kept (ties: lower
    bound, then the original order). The returned plan has been checked by `check_plan`.
    """
    orders = candidate_orders(graph) if reorder else {"original": list(graph.ops)}
    best = None
    for name, order in orders.items():
        gp = _plan_order(graph, order, name, workspace, inplace, views)
        if best is None or (gp.arena_bytes, gp.lower_bound_bytes) < \
                (best.arena_bytes, best.lower_bound_bytes):
            best = gp
    return best


def _fmt_live(live: list[tuple[str, int]], limit: int = 6) -> str:
    parts = [f"{name} ({nbytes} B)" for name, nbytes in live[:limit]]
    if len(live) > limit:
        parts.append(f"and {len(live) - limit} more")
    return ", ".join(parts)


def enforce_max_arena(plan: GraphPlan, limit: int | None) -> None:
    """Raise ResourceError (exit 4) when the arena exceeds `--max-arena limit`."""
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
    raise ResourceError(f"arena needs {plan.arena_bytes} bytes > --max-arena {limit}{where}; "
                        f"try -O2/-O3 fusion or a smaller input")
