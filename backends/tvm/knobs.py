"""Tunable parameters ("knobs") of the default schedules, for `edgecc --tune` (backends/tune.py).

A rule reads each tile parameter it derives from its analytic model through `knob`:

    mi, vw = knob("conv.tile", (mi, vw), lambda: conv_tiles(...))

Outside `overrides(...)` (every build) `knob` returns the default unchanged and never calls
the choices function, so the default schedules are exactly what the model picks. Inside, it
returns the override given for that name (when there is one) and records every knob the rule
consulted with its default and its valid choices for this kernel (most promising first):

    with overrides({"conv.tile": (4, 16)}) as seen:
        rule(sch)                          # traced: the trace is the tuning record
    seen == {"conv.tile": ((16, 16), [(16, 16), (8, 16), (4, 16), ...])}

Knob values are ints or tuples of ints (hashable, printable). The choices only include values the
rule can schedule on the kernel's workload as lowered by default (tile sizes dividing the
lowered extents), because records are matched against that workload. A value given for a
knob that is not among its choices raises ValueError (the candidate is skipped).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

_STATE: contextvars.ContextVar[tuple[dict, dict] | None] = contextvars.ContextVar(
    "edgecc_schedule_knobs", default=None)


def knob(name: str, default, choices: Callable[[], list]):
    """The value of the rule's parameter `name`: `default`, unless overridden while tuning."""
    state = _STATE.get()
    if state is None:
        return default
    values, seen = state
    options = list(choices())
    if default not in options:           # the model's pick is always a candidate
        options.insert(0, default)
    seen[name] = (default, options)
    value = values.get(name, default)
    if value not in options:
        raise ValueError(f"knob {name}={value} is not a choice for this kernel")
    return value


@contextlib.contextmanager
def overrides(values: dict | None = None) -> Iterator[dict]:
    """Within: `knob(name, ...)` returns values[name] when given; yields {name: (default,
    choices)} of the knobs consulted (filled in as the rule runs)."""
    seen: dict = {}
    token = _STATE.set((dict(values or {}), seen))
    try:
        yield seen
    finally:
        _STATE.reset(token)
