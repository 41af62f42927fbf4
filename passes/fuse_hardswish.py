"""fuse-hardswish: the spelled-out forms of HardSwish become one op.

  x * HardSigmoid(x; alpha=1/6, beta=0.5)        → HardSwish(x)
  x * (Clip(x + 3, 0, 6) / 6)                    → HardSwish(x)
  (x * Clip(x + 3, 0, 6)) / 6                    → HardSwish(x)     (PP-OCR's export)
with /6 also spelled *(1/6) (as simplify-algebra leaves it) and either operand order.
Every intermediate must be read only inside the pattern.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgecc.ops import build_op
from edgecc.pass_registry import register_pass

from ._rewrite import ROUNDING_TOLERANCE, const, is_close, num_uses, replace, scalar


def _const_operand(op, want: float):
    """The non-constant operand of a binary op whose other operand is the scalar `want`."""
    a, b = op.inputs
    if is_close(scalar(b), want) and const(a) is None:
        return a
    if op.kind in ("Add", "Mul") and is_close(scalar(a), want) and const(b) is None:
        return b
    return None


def _relu6_plus3(v):
    """(x, ops) when v = Clip(x + 3, 0, 6)."""
    clip = v.producer
    if clip is None or clip.kind != "Clip" or clip.attrs["min"] != 0 or clip.attrs["max"] != 6:
        return None
    add = clip.inputs[0].producer
    if add is None or add.kind != "Add":
        return None
    x = _const_operand(add, 3.0)
    return None if x is None else (x, [clip, add])


def _divided_by_6(op):
    """The dividend when op is v/6 or v*(1/6)."""
    if op is None:
        return None
    if op.kind == "Div":
        return _const_operand(op, 6.0)
    if op.kind == "Mul":
        return _const_operand(op, 1 / 6)
    return None


def _hard_sigmoid(v):
    """(x, ops) when v = HardSigmoid(x; 1/6, 0.5) or Clip(x + 3, 0, 6) / 6."""
    op = v.producer
    if op is None:
        return None
    if op.kind == "HardSigmoid":
        ok = is_close(op.attrs["alpha"], 1 / 6) and is_close(op.attrs["beta"], 0.5)
        return (op.inputs[0], [op]) if ok else None
    r = _divided_by_6(op)
    m = None if r is None else _relu6_plus3(r)
    return None if m is None else (m[0], [op] + m[1])


def match(op):
    """(x, intermediate ops) when op computes HardSwish(x), else None."""
    if op.kind == "Mul":
        for a, b in (op.inputs, op.inputs[::-1]):
            m = _hard_sigmoid(b)
            if m is not None and m[0] is a:
                return a, m[1]
    prod = _divided_by_6(op)                      # (x * Clip(x+3, 0, 6)) / 6
    mul = None if prod is None else prod.producer
    if mul is not None and mul.kind == "Mul":
        for a, b in (mul.inputs, mul.inputs[::-1]):
            m = _relu6_plus3(b)
            if m is not None and m[0] is a:
                return a, [mul] + m[1]
    return None


@register_pass
@dataclass(frozen=True)
class FuseHardSwish:
    name = "fuse-hardswish"
    tolerance = ROUNDING_TOLERANCE

    def run(self, graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if op not in graph.ops or op.kind not in ("Mul", "Div"):
                continue
            m = match(op)
            if m is None:
                continue
            x, inner = m
            if any(num_uses(graph, v) != 1 for o in inner for v in o.outputs):
                continue
            if x.type != op.output.type:
                continue
            new = build_op("HardSwish", [x], name=op.name,
                           out_names=[graph.fresh_name(op.output.name)])
            if replace(graph, op, [new], [new.output]):
                for o in inner:
                    graph.ops.remove(o)
                graph.remove_unused_params()
                changed = True
        return changed
