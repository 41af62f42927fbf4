"""fold-pad: an explicit Pad of the spatial axes goes into the consumer's own `pads`.

  Conv(Pad(x, p, 0))                                → Conv(x, pads + p)
  AveragePool(Pad(x, p, 0)), count_include_pad=1    → AveragePool(x, pads + p)
  AveragePool(Pad(x, p, 0)), no pads of its own     → AveragePool(x, p, count_include_pad=1)
  MaxPool(Pad(x, p, -inf))                          → MaxPool(x, pads + p)

Pools with ceil_mode=1 are refused (their last window is placed relative to the begin pad,
so implicit and explicit padding differ). The Pad stays while other ops still read it.
Consumers in the blocked layout NCHW{c}c ([N, C/c, H, W, c]) fold the same way: their `pads`
mean the same on axes 2, 3, and a Pad of the lanes axis 4 (channels) is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgecc.opdef import OpRuleError

from edgecc.ops import build_op
from edgecc.ops import has_trait
from edgecc.ops.layout import layout_of
from edgecc.pass_registry import register_pass

from ._rewrite import prune, record_refusal, replace


def spatial_pads(pad, blocked: bool = False) -> list[int] | str:
    """The Pad's spatial pads as Conv-style [begins..., ends...], or why it cannot fold.
    `blocked`: the padded value is NCHW{c}c, whose last axis holds channels."""
    if pad.attrs["mode"] != "constant":
        return f"Pad mode is {pad.attrs['mode']!r}, not constant"
    p, r = pad.attrs["pads"], pad.inputs[0].type.rank
    spatial = range(2, r - 1 if blocked else r)
    if r < 3 or any(p[i] or p[r + i] for i in range(r) if i not in spatial):
        return "Pad pads the batch or channel axis"
    if any(v < 0 for v in p):
        return "Pad crops (negative pads)"
    return [p[i] for i in spatial] + [p[r + i] for i in spatial]


def check(pad, user) -> str | None:
    """Why Pad → user cannot fold (None when it can)."""
    value, a = pad.attrs["value"], user.attrs
    if user.kind == "Conv":
        return None if value == 0 else f"pad value {value} is not 0"
    if user.kind == "MaxPool":
        if not (math.isinf(value) and value < 0):
            return f"pad value {value} is not -inf (MaxPool ignores implicit padding)"
    elif user.kind == "AveragePool":
        if value != 0:
            return f"pad value {value} is not 0"
        if a["count_include_pad"] != 1 and any(a["pads"]):
            return "AveragePool has its own pads and count_include_pad=0"
    else:
        return f"{user.kind} has no pads attribute"
    if a["ceil_mode"]:
        return "pool uses ceil_mode=1"
    return None


@register_pass
@dataclass(frozen=True)
class FoldPad:
    name = "fold-pad"
    tolerance = 0.0

    def run(self, graph, ctx) -> bool:
        changed = False
        users = graph.users()
        for pad in [op for op in graph.ops if op.kind == "Pad"]:
            for user in dict.fromkeys(users.get(pad.output, [])):
                p = spatial_pads(pad, has_trait(user, "layout_aware")
                                 and layout_of(user).is_blocked)
                reason = p if isinstance(p, str) else check(pad, user)
                if reason is None and user.inputs[0] is not pad.output:
                    reason = "the padded value is not the data operand"
                if reason is None:
                    reason = self.fold(graph, pad, user, p)
                if reason is not None:
                    record_refusal(ctx, self.name, pad, f"not folded into {user.describe()}: "
                                                        f"{reason}")
                else:
                    changed = True
        if changed:
            prune(graph)
        return changed

    def fold(self, graph, pad, user, p) -> str | None:
        attrs = dict(user.attrs)
        attrs["pads"] = [a + b for a, b in zip(user.attrs["pads"], p)]
        if user.kind == "AveragePool":
            attrs["count_include_pad"] = 1
        try:
            new = build_op(user.kind, [pad.inputs[0]] + user.inputs[1:], attrs, name=user.name,
                           out_names=[graph.fresh_name(user.output.name)])
        except OpRuleError as e:
            return str(e)
        if new.output.type.shape != user.output.type.shape:
            return "the result shape would change"
        if not replace(graph, user, [new], [new.output]):
            return "the result is a graph output"
        return None
