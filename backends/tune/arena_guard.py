"""The memory plan's view of a candidate schedule's scratch, for tuning."""
from __future__ import annotations

from edgecc.backends.bundle.program import WORKSPACE_THREADS, plan_memory, scratch_at_peak
from edgecc.backends.tvm.build import scratch_of
from edgecc.ir import Graph
from edgecc.target import Target


class ArenaGuard:
    """The memory plan's view of kernel scratch (bundle.program.plan_bundle): an op whose
    scratch on top of the activations live while it runs exceeds the activations' peak is
    built lean - with the least scratch, without its tuning record. A
    candidate whose scratch (e.g. the whole padded input instead of a few rows per task)
    would do that to an op its default schedule does not is rejected: records of such
    candidates made resnet50 2-3 % slower although they were 4-20 % faster alone."""

    def __init__(self, graph: Graph, target: Target):
        self.graph, self.target, self.threads = graph, target, WORKSPACE_THREADS
        self.activations = plan_memory(graph, {}, self.threads)

    def lean(self, indices, sch) -> set[int]:
        """The ops (of `indices`) the plan would build scratch-free with schedule `sch`."""
        ws = scratch_of(sch.mod["main"], self.target)
        if not ws.top and not ws.per_task:
            return set()
        return set(scratch_at_peak(self.graph, self.activations, {i: ws for i in indices},
                                   self.threads))

    def guard(self, indices, default):
        """Whether a candidate Schedule of the kernel running the ops `indices` makes no
        more of them scratch-free than its `default` schedule."""
        baseline = self.lean(indices, default)
        return lambda sch: self.lean(indices, sch) <= baseline
