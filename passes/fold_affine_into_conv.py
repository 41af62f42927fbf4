"""fold-affine-into-conv: a per-input-channel scale or shift feeding a Conv goes into its
weights (the mirror image of fuse-conv-bn, which folds what follows the conv).

  conv(x * a, W, c) = conv(x, W * a[channel], c)
  conv(x + b, W, c) = conv(x, W, c + sum_{j,k} W[m,j,k] * b[channel])    only when pads == 0

A shift is exact only without padding: the conv would otherwise pad x + b with zeros, not b.
The scaled or shifted value must be read by this conv alone. Channels are axis 1; with
group=g, output channel m reads input channels (m // (M/g)) * C/g + j. Convs in the blocked
layout NCHW{c}c (6-D weights) are refused: the pass runs before convert-layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecc.ops.layout import layout_of
from edgecc.pass_registry import register_pass

from ._rewrite import (ROUNDING_TOLERANCE, channel_vector, const, num_uses, per_channel,
                       record_refusal, replace_with_folded, suffixed)
from .simplify_algebra import as_affine


def input_channels(w: np.ndarray, group: int, v: np.ndarray) -> np.ndarray:
    """A per-input-channel vector laid out like W[M, C/g]: entry (m, j) = v[group(m)*C/g + j]."""
    m, cg = w.shape[:2]
    per_group = v.reshape(group, 1, cg)                  # [g, 1, C/g]
    return np.broadcast_to(per_group, (group, m // group, cg)).reshape(m, cg)


def plan(graph, conv):
    """(producer op, x, a, b) with conv's input = x*a + b per channel; a reason string when the
    producer is such a map but cannot fold; None when there is nothing to fold."""
    v = conv.inputs[0]
    aff = as_affine(v.producer)
    if aff is None:
        return None
    kind, x, c = aff
    if layout_of(conv).is_blocked:
        return (f"{conv.describe()} uses the blocked layout {conv.attrs['layout']} (6-D "
                f"weights, not folded; run fold-affine-into-conv before convert-layout)")
    if not per_channel(c.shape, v.type.shape) or v.type.rank < 3 or x.type != v.type:
        return None
    if num_uses(graph, v) != 1:
        return f"%{v.name} is also read elsewhere"
    if const(conv.inputs[1]) is None or (len(conv.inputs) > 2 and conv.inputs[2] is not None
                                         and const(conv.inputs[2]) is None):
        return f"{conv.describe()} weights are not constants"
    vec = channel_vector(c.astype(np.float64), v.type.shape)
    if kind == "Add" and any(conv.attrs["pads"]):
        return (f"a shift of {conv.describe()}'s input cannot fold: the conv pads "
                f"{conv.attrs['pads']} would pad with 0 instead of the shift")
    a = vec if kind == "Mul" else np.ones_like(vec)
    b = vec if kind == "Add" else np.zeros_like(vec)
    return v.producer, x, a, b


@register_pass
@dataclass(frozen=True)
class FoldAffineIntoConv:
    name = "fold-affine-into-conv"
    tolerance = ROUNDING_TOLERANCE

    def run(self, graph, ctx) -> bool:
        changed = False
        for conv in [op for op in graph.ops if op.kind == "Conv"]:
            while conv is not None:
                p = plan(graph, conv)
                if isinstance(p, str):
                    record_refusal(ctx, self.name, conv, p)
                if p is None or isinstance(p, str):
                    break
                conv = self.rewrite(graph, conv, *p)
                changed |= conv is not None
        return changed

    def rewrite(self, graph, conv, producer, x, a, b):
        """The new Conv reading x directly (None when it cannot replace the old one)."""
        wv = conv.inputs[1]
        w = const(wv).astype(np.float64)
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = np.zeros(w.shape[0]) if bias is None else const(bias).astype(np.float64)
        spatial = (1,) * (w.ndim - 2)
        group = conv.attrs["group"]
        new_w = w * input_channels(w, group, a).reshape(w.shape[:2] + spatial)
        shift = input_channels(w, group, b).reshape(w.shape[:2] + spatial)
        new_b = bias + (w * shift).reshape(w.shape[0], -1).sum(axis=1)
        dtype = wv.type.np_dtype
        names = [suffixed(wv.name, "_scaled"), suffixed(conv.name or conv.output.name, "_bias")]
        return replace_with_folded(graph, conv, producer, conv, x,
                                   [new_w.astype(dtype), new_b.astype(dtype)], names,
                                   dict(conv.attrs))
