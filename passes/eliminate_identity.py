"""eliminate-identity: remove Identity and Dropout (inference: Dropout is the identity).

    y = Identity(x)  →  readers of y read x

A graph output keeps its name: when y is an output, x takes over the name y (x must be an
op result that is not itself an output; otherwise the op stays, as it is what gives the
output its own name and buffer, e.g. `return %x, %copy_of_x` or an input returned as-is).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgecc.ir import Graph, Value
from edgecc.ops import has_trait
from edgecc.pass_registry import register_pass


def _removable(graph: Graph, x: Value, y: Value) -> bool:
    if y not in graph.outputs:
        return True
    return x.producer is not None and x not in graph.outputs


@register_pass
@dataclass(frozen=True)
class EliminateIdentity:
    name = "eliminate-identity"
    tolerance = 0.0               # values are forwarded unchanged

    def run(self, graph: Graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if not has_trait(op, "identity") or len(op.outputs) != 1:
                continue
            x, y = op.inputs[0], op.outputs[0]
            if not _removable(graph, x, y):
                continue
            if y in graph.outputs:          # x takes over the output's name
                x.name, y.name = y.name, f"{y.name}.dead"
            graph.replace_all_uses(y, x)
            graph.ops.remove(op)
            changed = True
        return changed
