"""dce: dead code elimination — ops whose results nobody reads, params nobody uses.

Ops are pure, so an op is dead when none of its results is read by a live op or returned.
Fused bodies are cleaned the same way (their arguments stay: they bind the op's operands).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgecc.ir import Graph
from edgecc.pass_registry import register_pass

from ._rewrite import remove_dead_ops


@register_pass
@dataclass(frozen=True)
class DCE:
    name = "dce"
    tolerance = 0.0               # removes only unread values: outputs are bit-identical

    def run(self, graph: Graph, ctx) -> bool:
        changed = remove_dead_ops(graph)
        for op in graph.ops:
            body = op.attrs.get("body")
            if isinstance(body, Graph):
                changed |= remove_dead_ops(body)
        n = len(graph.params)
        graph.remove_unused_params()
        return changed or len(graph.params) != n
