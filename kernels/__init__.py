"""Numba reference kernels and the executor that runs a graph with them (the oracle).

    from edgecc.kernels import run_graph, run_op, KERNELS
    outputs = run_graph(graph, {"x": array})
"""
from . import elementwise, movement  # noqa: F401  (register kernels)
from .executor import run_graph, run_op
from .registry import KERNELS

__all__ = ["run_graph", "run_op", "KERNELS"]
