"""Building IR graphs by hand: for tests, examples and the fuzzer.

    b = GraphBuilder("block", seed=0)
    x = b.input("x", (1, 16, 8, 8))                   # f32 input (its feed: seeded N(0, 1))
    w = b.rand("w", (32, 16, 3, 3), scale=0.1)        # a weight of seeded random values
    y = b.op("Relu", [b.op("Conv", [x, w], pads=[1] * 4)])
    graph = b.build(y)                                # verified; b.feeds has the inputs

Every op goes through build_op (canonical attributes, inferred types); results get fresh
names derived from the op's name. `b.op` returns the single result, `b.ops` all of them.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, TensorType, Value
from .ops import build_op, verify_graph


class GraphBuilder:
    def __init__(self, name: str = "g", seed: int = 0):
        self.graph = Graph(name)
        self.feeds: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    # ---- values -------------------------------------------------------------------------
    def input(self, name: str, shape_or_array, dtype: str = "f32") -> Value:
        """A graph input, given by its shape (its feed is seeded random: N(0, 1) floats,
        integers in [0, 10), booleans) or by the array it is fed."""
        if isinstance(shape_or_array, np.ndarray):
            array = shape_or_array
            v = Value(name, TensorType.of(array))
        else:
            v = Value(name, TensorType(dtype, tuple(shape_or_array)))
            array = self._random(v.type)
        self.graph.inputs.append(v)
        self.feeds[name] = array
        return v

    def param(self, name: str, array) -> Value:
        """A weight holding `array` (its name is made unique)."""
        return self.graph.add_param(name, np.asarray(array))

    def rand(self, name: str, shape, scale: float = 1.0, dtype: str = "f32") -> Value:
        """A weight of seeded N(0, scale²) values."""
        return self.graph.add_param(name, (self.rng.standard_normal(shape) * scale)
                                    .astype(TensorType(dtype, ()).np_dtype))

    def operand(self, name: str, array, as_param: bool) -> Value:
        """`array` as a weight, or as a graph input fed with it."""
        if as_param:
            return self.graph.add_param(name, np.asarray(array))
        return self.input(name, np.asarray(array))

    # ---- ops ----------------------------------------------------------------------------
    def ops(self, kind: str, inputs: list, name: str | None = None,
            out_names: list[str] | None = None, **attrs) -> list[Value]:
        """Append `kind(inputs){attrs}`; returns all its results."""
        name = name or f"{kind.lower()}{len(self.graph.ops)}"
        op = build_op(kind, inputs, attrs, name=name, out_names=out_names)
        if out_names is None:                   # fresh names: `name`, or `name_<i>`
            for i, v in enumerate(op.outputs):
                v.name = self.graph.fresh_name(name if len(op.outputs) == 1 else f"{name}_{i}")
        self.graph.ops.append(op)
        return op.outputs

    def op(self, kind: str, inputs: list, name: str | None = None, **attrs) -> Value:
        """Append an op with one result; returns it."""
        outs = self.ops(kind, inputs, name, **attrs)
        if len(outs) != 1:
            raise ValueError(f"{kind} has {len(outs)} results; use GraphBuilder.ops")
        return outs[0]

    # ---- the graph ----------------------------------------------------------------------
    def build(self, *outputs: Value) -> Graph:
        """The graph returning `outputs`, verified."""
        self.graph.outputs = list(outputs)
        verify_graph(self.graph)
        return self.graph

    def _random(self, t: TensorType) -> np.ndarray:
        if t.dtype.startswith("f"):
            return self.rng.standard_normal(t.shape).astype(t.np_dtype)
        if t.dtype == "bool":
            return self.rng.integers(0, 2, t.shape).astype(bool)
        return self.rng.integers(0, 10, t.shape).astype(t.np_dtype)
