"""Helpers for tests that build IR graphs by hand (on edgecc.builder.GraphBuilder)."""
from __future__ import annotations

from edgecc.builder import GraphBuilder
from edgecc.ir import Graph


def one_op_graph(cases, name: str = "cases") -> tuple[Graph, dict]:
    """A graph of independent single ops, (graph, feeds). cases = [(kind, arrays, attrs,
    param positions)]: operand j of case i is a weight `c<i>_p<j>` when j is listed, else a
    graph input `c<i>_in<j>` fed with its array (None: an omitted operand); every result is
    a graph output."""
    b = GraphBuilder(name)
    for i, (kind, arrays, attrs, params) in enumerate(cases):
        vals = [None if a is None else
                b.operand(f"c{i}_p{j}" if j in params else f"c{i}_in{j}", a, j in params)
                for j, a in enumerate(arrays)]
        b.ops(kind, vals, name=f"c{i}_{kind}", out_names=None, **attrs)
    b.graph.outputs = [v for op in b.graph.ops for v in op.outputs]
    return b.graph, b.feeds
