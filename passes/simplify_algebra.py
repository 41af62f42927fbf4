"""simplify-algebra: arithmetic with constants, on float tensors.

  x*1, 1*x, x/1, x+0, 0+x, x-0     → x           (when the constant does not broadcast x up)
  x - c                            → x + (-c)
  x / c                            → x * (1/c)   (c without zeros; within an ulp)
  (x*c1)*c2                        → x*(c1*c2)
  (x+c1)+c2                        → x+(c1+c2)
Chains fold only through an intermediate nobody else reads. The canonical Mul/Add forms are
what fuse-conv-bn folds into convolution weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecc.ops import build_op
from edgecc.pass_registry import register_pass

from ._rewrite import (FLOAT_DTYPES, ROUNDING_TOLERANCE, can_forward, const, forward, num_uses,
                       prune, replace)


def as_affine(op):
    """(kind, x, c) with kind Add or Mul such that op(x) == kind(x, c), for a float binary
    op with exactly one constant operand; None otherwise."""
    if op is None or op.kind not in ("Add", "Sub", "Mul", "Div"):
        return None
    if op.output.type.dtype not in FLOAT_DTYPES:
        return None
    a, b = op.inputs
    ca, cb = const(a), const(b)
    if (ca is None) == (cb is None):
        return None
    if cb is not None:
        if op.kind == "Sub":
            return "Add", a, -cb                      # x - c → x + (-c)
        if op.kind == "Div":
            if not np.all(cb != 0):
                return None
            return "Mul", a, (1 / cb).astype(cb.dtype)  # x / c → x * (1/c)
        return op.kind, a, cb
    if op.kind in ("Add", "Mul"):
        return op.kind, b, ca
    return None


def _neutral(kind, c) -> bool:
    return bool(np.all(c == (0 if kind == "Add" else 1)))


@register_pass
@dataclass(frozen=True)
class SimplifyAlgebra:
    name = "simplify-algebra"
    tolerance = ROUNDING_TOLERANCE

    def run(self, graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if op in graph.ops:
                changed |= self.rewrite(graph, op)
        if changed:
            prune(graph)
        return changed

    def rewrite(self, graph, op) -> bool:
        aff = as_affine(op)
        if aff is None:
            return False
        kind, x, c = aff
        y = op.output
        inner = as_affine(x.producer)
        if inner is not None and inner[0] == kind and num_uses(graph, x) == 1:
            _, x0, c0 = inner                                  # (x0∘c0)∘c → x0∘(c0∘c)
            c = c0 * c if kind == "Mul" else c0 + c
            x = x0
        if _neutral(kind, c) and can_forward(graph, y, x):   # x*1 → x, x+0 → x
            forward(graph, y, x)
            graph.ops.remove(op)
            if x is not aff[1]:
                graph.ops.remove(aff[1].producer)
            return True
        if x is aff[1] and op.kind == kind:                    # already canonical
            return False
        cv = graph.add_param(f"{op.name or kind}_c", np.asarray(c, dtype=y.type.np_dtype))
        new = build_op(kind, [x, cv], name=op.name, out_names=[graph.fresh_name(y.name)])
        if new.output.type.shape != y.type.shape or not replace(graph, op, [new], [new.output]):
            graph.params.remove(cv)
            return False
        if x is not aff[1]:                                    # the inner op is now dead
            graph.ops.remove(aff[1].producer)
        return True
