"""Numba reference kernels and the executor that runs a graph with them (the oracle).

    from edgecc.kernels import run_graph, run_op, KERNELS
    outputs = run_graph(graph, {"x": array})                 # list, in graph.outputs order
    outputs, values = run_graph(graph, feeds, keep_all=True)  # values: name → array
"""
from . import (conv, dense, elementwise, fused, layout, lstm, movement,  # noqa: F401
               norm, pooling, quant, reduce, resize)  # (importing registers the kernels)
from .executor import run_graph, run_op
from .registry import KERNELS

__all__ = ["run_graph", "run_op", "KERNELS"]
