"""Offset assignment for one static arena (Glow `MemoryAllocator` style).

Buffers (name, size, first, last) go in — `first`/`last` are kernel indices, inclusive, so a
kernel's inputs and outputs overlap in time — and a Plan (offsets, arena size) comes out.
Every offset and every size is rounded to ALIGN bytes.

Strategies follow Pisarchyk & Lee, "Efficient Memory Management for Deep Neural Net Inference"
(2020): greedy by size, greedy by breadth, and first-fit / best-fit by start time, plus a
"squeaky wheel" refinement of greedy by size that promotes the buffers ending above the bound.
`plan_buffers` runs them all and keeps the smallest arena (ties: the first in STRATEGIES order).

The lower bound is the most bytes simultaneously live at any kernel; intervals form an interval
graph, so no placement can do better than that.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Sequence

ALIGN = 64


def align(n: int, a: int = ALIGN) -> int:
    return -(-int(n) // a) * a


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int     # bytes (aligned up by the planner)
    first: int    # kernel index that writes it first
    last: int     # kernel index that reads it last (inclusive)

    def __post_init__(self):
        if self.size < 0 or self.first > self.last:
            raise ValueError(f"bad buffer {self}")

    @property
    def asize(self) -> int:
        return align(self.size)

    def overlaps(self, other: "Buffer") -> bool:
        """True when both are live at some kernel."""
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Plan:
    offsets: dict[str, int]
    arena_bytes: int
    lower_bound_bytes: int
    naive_bytes: int
    strategy: str


class PlanCheckError(Exception):
    """A plan violates an arena invariant (a planner bug, never a user error)."""


# ---- bounds --------------------------------------------------------------------------------

def live_bytes(buffers: Sequence[Buffer], steps: int | None = None) -> list[int]:
    """Aligned bytes live at each kernel index 0..steps-1 (difference array sweep)."""
    if steps is None:
        steps = max((b.last for b in buffers), default=-1) + 1
    delta = [0] * (steps + 1)
    for b in buffers:
        delta[b.first] += b.asize
        delta[b.last + 1] -= b.asize
    out, run = [], 0
    for t in range(steps):
        run += delta[t]
        out.append(run)
    return out


def lower_bound(buffers: Sequence[Buffer]) -> int:
    return max(live_bytes(buffers), default=0)


def naive_size(buffers: Sequence[Buffer]) -> int:
    """One private slot per buffer, no reuse."""
    return sum(b.asize for b in buffers)


# ---- placement primitive -------------------------------------------------------------------

def _place(b: Buffer, placed: list[tuple[int, int, Buffer]], best_fit: bool) -> int:
    """Lowest (first-fit) or tightest (best-fit) gap among time-overlapping placed buffers.
    `placed` is sorted by offset."""
    size = b.asize
    best, best_gap, end = None, None, 0
    for lo, _, p in placed:
        if not p.asize or p.first > b.last or b.first > p.last:
            continue
        gap = lo - end
        if gap >= size:
            if not best_fit:
                return end
            if best_gap is None or gap < best_gap:
                best, best_gap = end, gap
        end = max(end, lo + p.asize)
    return end if best is None else best


def _assign(order: list[Buffer], best_fit: bool) -> dict[str, int]:
    placed: list[tuple[int, int, Buffer]] = []       # (offset, placement index, buffer)
    offsets = {}
    for i, b in enumerate(order):
        off = _place(b, placed, best_fit)
        offsets[b.name] = off
        bisect.insort(placed, (off, i, b))
    return offsets


# ---- strategies: each maps buffers to offsets ----------------------------------------------

def greedy_by_size(buffers: list[Buffer]) -> dict[str, int]:
    """Largest first, into the tightest gap (TFLite's default arena planner)."""
    return _assign(sorted(buffers, key=lambda b: (-b.asize, b.first, b.last, b.name)), True)


def greedy_by_breadth(buffers: list[Buffer]) -> dict[str, int]:
    """Kernels by breadth (live bytes) descending; each kernel's buffers largest first."""
    steps = max((b.last for b in buffers), default=-1) + 1
    live = live_bytes(buffers, steps)
    by_step: list[list[Buffer]] = [[] for _ in range(steps)]
    for b in buffers:
        for t in range(b.first, b.last + 1):
            by_step[t].append(b)
    order, seen = [], set()
    for t in sorted(range(steps), key=lambda t: (-live[t], t)):
        for b in sorted(by_step[t], key=lambda b: (-b.asize, b.first, b.name)):
            if b.name not in seen:
                seen.add(b.name)
                order.append(b)
    return _assign(order, True)


def greedy_by_longest(buffers: list[Buffer]) -> dict[str, int]:
    """Longest-lived first (they fragment most), then larger; tightest gap."""
    return _assign(sorted(buffers, key=lambda b: (b.first - b.last, -b.asize, b.first, b.name)),
                   True)


def first_fit_by_start(buffers: list[Buffer]) -> dict[str, int]:
    return _assign(sorted(buffers, key=lambda b: (b.first, -b.asize, b.name)), False)


def best_fit_by_start(buffers: list[Buffer]) -> dict[str, int]:
    return _assign(sorted(buffers, key=lambda b: (b.first, -b.asize, b.name)), True)


def squeaky_wheel(buffers: list[Buffer], rounds: int | None = None) -> dict[str, int]:
    """Greedy by size, then repeatedly promote the buffers that stick out above the lower bound
    (halve their position in the placement order) and re-place; keep the best round.
    Deterministic; stops at the lower bound. Rounds default to a budget of ~2e7 buffer pairs."""
    if rounds is None:
        rounds = max(4, min(200, 20_000_000 // max(1, len(buffers)) ** 2))
    lb = lower_bound(buffers)
    order = sorted(buffers, key=lambda b: (-b.asize, b.first, b.last, b.name))
    best = None
    for _ in range(rounds):
        offsets = _assign(order, True)
        size = arena_of(buffers, offsets)
        if best is None or size < best[0]:
            best = (size, offsets)
        if size <= lb:
            break
        for b in [b for b in order if offsets[b.name] + b.asize > lb]:
            i = order.index(b)
            order.insert(i // 2, order.pop(i))
    return best[1] if best else {}


STRATEGIES: dict[str, Callable[[list[Buffer]], dict[str, int]]] = {
    "greedy_by_size": greedy_by_size,
    "greedy_by_breadth": greedy_by_breadth,
    "greedy_by_longest": greedy_by_longest,
    "best_fit_by_start": best_fit_by_start,
    "first_fit_by_start": first_fit_by_start,
    "squeaky_wheel": squeaky_wheel,      # slowest: last, skipped once another hits the bound
}


def arena_of(buffers: Sequence[Buffer], offsets: dict[str, int]) -> int:
    return max((offsets[b.name] + b.asize for b in buffers), default=0)


def plan_buffers(buffers: Sequence[Buffer], strategies: Sequence[str] | None = None) -> Plan:
    """Run every strategy (or the named ones) and keep the smallest arena."""
    buffers = list(buffers)
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError("buffer names must be unique")
    best = None
    for name in strategies or STRATEGIES:
        offsets = STRATEGIES[name](buffers)
        size = arena_of(buffers, offsets)
        if best is None or size < best[0]:
            best = (size, name, offsets)
            if size == lower_bound(buffers):
                break                      # optimal: later strategies cannot win
    size, name, offsets = best if best else (0, "empty", {})
    return Plan(offsets, size, lower_bound(buffers), naive_size(buffers), name)


def check_plan(buffers: Sequence[Buffer], plan: Plan) -> None:
    """Prove the plan sound: aligned, inside the arena, no two live buffers share a byte."""
    if plan.arena_bytes % ALIGN:
        raise PlanCheckError(f"arena size {plan.arena_bytes} is not {ALIGN}-byte aligned")
    if plan.arena_bytes < plan.lower_bound_bytes:
        raise PlanCheckError(f"arena {plan.arena_bytes} is below the lower bound "
                             f"{plan.lower_bound_bytes}")
    if plan.lower_bound_bytes != lower_bound(buffers):
        raise PlanCheckError("the plan's lower bound does not match its buffers")
    for b in buffers:
        off = plan.offsets.get(b.name)
        if off is None:
            raise PlanCheckError(f"buffer '{b.name}' has no offset")
        if off < 0 or off % ALIGN:
            raise PlanCheckError(f"buffer '{b.name}' offset {off} is not {ALIGN}-byte aligned")
        if off + b.asize > plan.arena_bytes:
            raise PlanCheckError(f"buffer '{b.name}' [{off}, {off + b.asize}) exceeds the "
                                 f"arena of {plan.arena_bytes} bytes")
    ordered = sorted((b for b in buffers if b.asize), key=lambda b: (b.first, b.name))
    for i, a in enumerate(ordered):       # sweep: only buffers starting before a ends can clash
        a_lo = plan.offsets[a.name]
        for b in ordered[i + 1:]:
            if b.first > a.last:
                break
            b_lo = plan.offsets[b.name]
            if a_lo < b_lo + b.asize and b_lo < a_lo + a.asize:
                raise PlanCheckError(
                    f"buffers '{a.name}' [{a_lo}, {a_lo + a.asize}) live {a.first}..{a.last} and "
                    f"'{b.name}' [{b_lo}, {b_lo + b.asize}) live {b.first}..{b.last} overlap")
