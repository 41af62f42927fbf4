"""fuse-conv-bn: a per-channel affine map after Conv / ConvTranspose / Gemm goes into its
weights and bias.

  BN(conv(x, W, b)) = conv(x, W*s, (b - mean)*s + B)     s = scale / sqrt(var + eps)
  conv(x, W, b) * c = conv(x, W*c, b*c)                  c per output channel (or scalar)
  conv(x, W, b) + c = conv(x, W, b + c)                  (Sub/Div by c are Add(-c)/Mul(1/c))

For ConvTranspose the output channels are W's axis 1 within each group; for Gemm they are the
columns of B' (B or B^T) and C becomes beta*C*s + t. The rewrite is refused, with the reason
recorded in the pass context (see _rewrite.record_refusal), when the anchor's result has
other readers, its weights are not constants, or the constants vary along other axes, and
for a Conv in the blocked layout NCHW{c}c (6-D weights; the pass runs before convert-layout).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecc.ops import has_trait
from edgecc.ops.layout import layout_of
from edgecc.pass_registry import register_pass

from ._rewrite import (FLOAT_DTYPES, channel_vector, const, num_uses, per_channel,
                       record_refusal, replace_with_folded, suffixed)
from .simplify_algebra import as_affine

def affine(op):
    """(x, s, t) with op(x) = x*s + t per output channel; a reason string when op
    is an affine map that is not per-channel; None when op is not of the right form."""
    if op.kind == "BatchNormalization":
        x, scale, bias, mean, var = op.inputs
        arrays = [const(v) for v in (scale, bias, mean, var)]
        if any(a is None for a in arrays):
            return "BatchNormalization statistics are not constants"
        scale, bias, mean, var = (a.astype(np.float64) for a in arrays)
        s = scale / np.sqrt(var + op.attrs["epsilon"])
        return x, s, bias - mean * s
    aff = as_affine(op)
    if aff is None:
        return None
    kind, x, c = aff
    cv = op.inputs[1] if const(op.inputs[1]) is not None else op.inputs[0]
    if not per_channel(c.shape, op.output.type.shape) or op.output.type.rank < 2:
        return (f"constant %{cv.name} of shape {list(c.shape)} is not per-channel for the "
                f"{list(op.output.type.shape)} result (only axis 1 may vary)")
    c = channel_vector(c.astype(np.float64), op.output.type.shape)
    return (x, c, np.zeros_like(c)) if kind == "Mul" else (x, np.ones_like(c), c)


def blocked(anchor) -> str | None:
    """Why a blocked-layout Conv anchor is left alone (None for the other anchors)."""
    if anchor.kind != "Conv" or not layout_of(anchor).is_blocked:
        return None
    return (f"{anchor.describe()} uses the blocked layout {anchor.attrs['layout']} (6-D "
            f"weights, not folded; run fuse-conv-bn before convert-layout)")


def plan(graph, op):
    """(anchor, s, t) to fold op into, a reason string when it must not, None when op does
    not follow an anchor at all."""
    aff = affine(op)
    if aff is None:
        return None
    if isinstance(aff, str):
        x = op.inputs[0] if const(op.inputs[0]) is None else op.inputs[1]
        anchor = x.producer
        if anchor is None or not has_trait(anchor, "affine_foldable"):
            return None
        return blocked(anchor) or aff
    x, s, t = aff
    anchor = x.producer
    if anchor is None or not has_trait(anchor, "affine_foldable"):
        if op.kind == "BatchNormalization":
            what = "a graph input or weight" if anchor is None else anchor.describe()
            return f"its input %{x.name} comes from {what}, not Conv/ConvTranspose/Gemm"
        return None
    why = blocked(anchor)
    if why:
        return why
    n = num_uses(graph, x)
    if n > 1:
        return (f"{anchor.describe()} result %{x.name} has {n - 1} other consumer(s) "
                f"(or is a graph output); folding would change what they read")
    w, b = anchor.inputs[1], anchor.inputs[2] if len(anchor.inputs) > 2 else None
    if const(w) is None or (b is not None and const(b) is None):
        return f"{anchor.describe()} weights are not constants"
    if x.type.dtype not in FLOAT_DTYPES:
        return f"{anchor.describe()} computes {x.type.dtype}, not float"
    return anchor, s, t


def fold(anchor, s, t):
    """New weights (W', B') with anchor'(x) = anchor(x)*s + t; s, t have one entry per
    output channel (float64)."""
    w = const(anchor.inputs[1]).astype(np.float64)
    b = const(anchor.inputs[2]) if len(anchor.inputs) > 2 else None
    if anchor.kind == "Gemm":
        a = anchor.attrs
        w = w * (s[:, None] if a["transB"] else s[None, :])
        c = 0.0 if b is None else a["beta"] * b.astype(np.float64)
        return w, c * s + t
    b = 0.0 if b is None else b.astype(np.float64)
    if anchor.kind == "Conv":
        w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    else:  # ConvTranspose: W[C, M/g, k...], output channel = group * M/g + j
        g, c_in, mg = anchor.attrs["group"], w.shape[0], w.shape[1]
        grouped = w.reshape((g, c_in // g, mg) + w.shape[2:])
        w = (grouped * s.reshape((g, 1, mg) + (1,) * (w.ndim - 2))).reshape(w.shape)
    return w, b * s + t


@register_pass
@dataclass(frozen=True)
class FuseConvBN:
    name = "fuse-conv-bn"
    # W*s is rounded once instead of conv(x)*s: ulp-level per layer, which deep nets amplify
    # (1.4e-5 measured on ppocr_det's near-zero sigmoid output)
    tolerance = 5e-5

    def run(self, graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if op not in graph.ops or op.kind not in (
                    "BatchNormalization", "Mul", "Add", "Sub", "Div"):
                continue
            p = plan(graph, op)
            if isinstance(p, str):
                record_refusal(ctx, self.name, op, p)
            elif p is not None:
                changed |= self.rewrite(graph, op, *p)
        return changed

    def rewrite(self, graph, op, anchor, s, t) -> bool:
        w, b = fold(anchor, s, t)
        x, wv = anchor.inputs[0], anchor.inputs[1]
        dtype = wv.type.np_dtype
        names = (suffixed(wv.name, "_folded"),
                 suffixed(anchor.name or anchor.output.name, "_bias"))
        attrs = dict(anchor.attrs)
        if anchor.kind == "Gemm":
            attrs["beta"] = 1.0
        return replace_with_folded(graph, op, anchor, anchor, x,
                                   [w.astype(dtype), b.astype(dtype)], names, attrs) is not None
