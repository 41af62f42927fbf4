"""Helpers for tests that build IR graphs by hand."""
import numpy as np

from edgecc.ir import Graph, TensorType, Value


def operand(graph: Graph, feeds: dict, name: str, array, as_param: bool) -> Value:
    """`array` as a weight of `graph` or as a new graph input fed from `feeds`."""
    array = np.asarray(array)
    if as_param:
        return graph.add_param(name, array)
    v = Value(name, TensorType.of(array))
    graph.inputs.append(v)
    feeds[name] = array
    return v
