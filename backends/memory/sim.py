"""Run a graph through its memory plan on a simulated byte arena — the planner's oracle.

Every value is read from and written to the bytes its plan location names (arena offset, or the
caller's input/output buffers, or the weights), kernels are the reference kernels, and the
simulation is adversarial: the arena starts as 0xFF bytes (NaN for floats), a kernel's
workspace is scribbled over before the kernel reads its operands, and every arena buffer is
scribbled over right after its last use. Any aliasing or lifetime mistake in a plan therefore
changes the results, which must equal the reference executor's bit for bit.
"""
from __future__ import annotations

import numpy as np

from edgecc.ir import Graph, Value
from edgecc.kernels.executor import run_op

from edgecc.backends.memory.alloc import PlanCheckError
from edgecc.backends.memory.plan import GraphPlan

POISON = 0xFF


def simulate(graph: Graph, plan: GraphPlan, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    arena = np.full(plan.arena_bytes, POISON, np.uint8)
    storage = {"input": {v.name: _bytes(feeds[v.name], v) for v in graph.inputs},
               "param": {v.name: _bytes(v.data, v) for v in graph.params},
               "output": {v.name: np.full(v.type.nbytes, POISON, np.uint8)
                          for v in graph.outputs}}

    def region(v: Value) -> np.ndarray:
        loc = plan.location(v.name)
        if loc.kind == "arena":
            return arena[loc.offset:loc.offset + v.type.nbytes]
        return storage[loc.kind][loc.root][loc.offset:loc.offset + v.type.nbytes]

    def read(v: Value | None):
        if v is None:
            return None
        return region(v).view(v.type.np_dtype).reshape(v.type.shape).copy()

    buffers = {b.name: b for b in plan.buffers}
    dies: dict[int, list[str]] = {}
    for b in plan.buffers:
        dies.setdefault(b.last, []).append(b.name)

    for t, op in enumerate(plan.order):
        ws = plan.workspace_offset(t)
        if ws is not None:
            arena[ws:ws + buffers[plan.workspace[t]].asize] = 0xA5
        if not plan.is_noop(op):
            results = run_op(op, [read(v) for v in op.inputs])
            for v, r in zip(op.outputs, results):
                region(v)[:] = _bytes(r, v)
        for name in dies.get(t, ()):
            off = plan.offsets[name]
            arena[off:off + buffers[name].asize] = POISON
    for kind in ("input", "param"):
        for v in (graph.inputs if kind == "input" else graph.params):
            if not np.array_equal(storage[kind][v.name], _bytes(
                    feeds[v.name] if kind == "input" else v.data, v)):
                raise PlanCheckError(f"the plan overwrote graph {kind} %{v.name}")
    return [read(v) for v in graph.outputs]


def _bytes(a: np.ndarray, v: Value) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=v.type.np_dtype)).reshape(-1).view(np.uint8)
