"""fold-constants: an op whose operands are all weights is computed now, by the reference
executor, and replaced by a new weight holding its result.

Results that would be much larger than their operands (Expand/Tile of a small constant) are
left to run time: folding them would only grow the bundle. Graph outputs are not folded (a
bundle output is written by a kernel).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgecc.kernels import KERNELS, run_op
from edgecc.pass_registry import register_pass

from ._rewrite import const, prune


@register_pass
@dataclass(frozen=True)
class FoldConstants:
    name = "fold-constants"
    tolerance = 0.0          # the executor computes exactly what run time would
    max_growth_bytes: int = 1 << 20   # fold a result bigger than its operands only below this

    def run(self, graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if not self.foldable(graph, op):
                continue
            results = run_op(op, [const(v) for v in op.inputs])
            graph.ops.remove(op)
            for old, data in zip(op.outputs, results):
                new = graph.add_param(old.name, data)   # the name is free again
                graph.replace_all_uses(old, new)
            changed = True
        if changed:
            prune(graph)
        return changed

    def foldable(self, graph, op) -> bool:
        operands = [v for v in op.inputs if v is not None]
        if not operands or any(const(v) is None for v in operands):
            return False
        if op.kind not in KERNELS or any(v in graph.outputs for v in op.outputs):
            return False
        out_bytes = sum(v.type.nbytes for v in op.outputs)
        in_bytes = sum(v.type.nbytes for v in operands)
        return out_bytes <= in_bytes or out_bytes <= self.max_growth_bytes
