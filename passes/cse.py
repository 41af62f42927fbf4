"""cse: common subexpression elimination.

Two weights with the same element type, shape and bytes become one; two ops of the same kind
with the same operands and attributes become one (ops are pure). A graph output keeps its own
producer unless the survivor can take over its name (see _rewrite.forward).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgecc.ir import Graph
from edgecc.pass_registry import register_pass

from ._rewrite import can_forward, forward, prune


def _hashable(x):
    """An attribute value as a hashable key (lists → tuples, arrays → bytes, graphs by id)."""
    if isinstance(x, (list, tuple)):
        return tuple(_hashable(v) for v in x)
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, Graph):
        return ("graph", id(x))
    if isinstance(x, float) and x != x:
        return ("nan",)
    try:
        hash(x)
    except TypeError:          # an attribute kind we do not know: equal only to itself
        return ("object", id(x))
    return x


@register_pass
@dataclass(frozen=True)
class CSE:
    name = "cse"
    tolerance = 0.0

    def run(self, graph, ctx) -> bool:
        changed = self.merge_params(graph)
        seen = {}
        for op in graph.ops:
            key = (op.kind, tuple(id(v) for v in op.inputs), len(op.outputs),
                   tuple(sorted((k, _hashable(v)) for k, v in op.attrs.items())))
            first = seen.get(key)
            if first is None:
                seen[key] = op
                continue
            pairs = list(zip(op.outputs, first.outputs))
            if all(can_forward(graph, old, new) for old, new in pairs):
                for old, new in pairs:
                    forward(graph, old, new)
                changed = True
        if changed:
            prune(graph)
        return changed

    @staticmethod
    def merge_params(graph) -> bool:
        seen, changed = {}, False
        for p in graph.params:
            data = np.ascontiguousarray(p.data)
            digest = hashlib.sha1(data.reshape(-1).view(np.uint8)).digest()
            key = (data.dtype.str, data.shape, digest)
            first = seen.setdefault(key, p)
            if first is not p and p not in graph.outputs and np.array_equal(first.data, data):
                graph.replace_all_uses(p, first)
                changed = True
        return changed
