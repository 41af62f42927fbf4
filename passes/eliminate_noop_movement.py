"""eliminate-noop-movement: data movement that moves nothing goes away.

  view(x) with the shape of x            → x        (Reshape/Flatten/Squeeze/Unsqueeze)
  view(view(x))                          → Reshape(x)
  Transpose(x, identity perm)            → x
  Transpose(Transpose(x, p1), p2)        → Transpose(x, p1∘p2)   (→ x when that is identity)
  Transpose moving only size-1 axes      → Reshape(x)            (same element order: a view)
  Expand / Tile / Pad / Slice / Concat that leave their single operand as is → x
"""
from __future__ import annotations

from dataclasses import dataclass

from edgecc.ops import build_op, has_trait, is_noop
from edgecc.pass_registry import register_pass

from ._rewrite import can_forward, forward, prune, replace


def _reshape(graph, x, op):
    """Reshape(x) to op's result shape, named like op."""
    return build_op("Reshape", [x], {"shape": list(op.output.type.shape)}, name=op.name,
                    out_names=[graph.fresh_name(op.output.name)])


def _moves_only_unit_axes(op) -> bool:
    """Transpose whose non-1 axes keep their relative order: same memory layout."""
    shape = op.inputs[0].type.shape
    big = [p for p in op.attrs["perm"] if shape[p] != 1]
    return big == sorted(big)


@register_pass
@dataclass(frozen=True)
class EliminateNoopMovement:
    name = "eliminate-noop-movement"
    tolerance = 0.0

    def run(self, graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            # data movement, not Identity/Dropout (eliminate-identity's job)
            if has_trait(op, "movement") and not has_trait(op, "identity"):
                changed |= self.rewrite(graph, op)
        if changed:
            prune(graph)
        return changed

    def rewrite(self, graph, op) -> bool:
        x, y = op.inputs[0], op.output
        if is_noop(op):                                       # f(x) == x (its opdef says)
            if can_forward(graph, y, x):
                forward(graph, y, x)
                graph.ops.remove(op)
                return True
            return False
        inner = x.producer
        if has_trait(op, "reshape") and inner is not None and has_trait(inner, "reshape"):
            new = _reshape(graph, inner.inputs[0], op)        # view(view(x)) → Reshape(x)
        elif op.kind == "Transpose" and inner is not None and inner.kind == "Transpose":
            p1, p2 = inner.attrs["perm"], op.attrs["perm"]    # y[k] = x[p1[p2[k]]]
            new = build_op("Transpose", [inner.inputs[0]], {"perm": [p1[k] for k in p2]},
                           name=op.name, out_names=[graph.fresh_name(y.name)])
        elif op.kind == "Transpose" and _moves_only_unit_axes(op):
            new = _reshape(graph, x, op)
        else:
            return False
        if not replace(graph, op, [new], [new.output]):
            return False
        if is_noop(new):                                      # e.g. the perms cancelled
            self.rewrite(graph, new)
        return True
