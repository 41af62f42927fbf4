"""Convolution, dense and normalization ops."""
from __future__ import annotations

import math

from ..ir import TensorType
from ..opdef import REQUIRED, OpRuleError, opdef
from ._util import (NUMERIC_DTYPES, attr_axis, attr_float, attr_int, attr_ints,
                    broadcast_shapes, fmt, need_dtype, need_float, need_rank, need_shape, operand,
                    same_dtype, unidirectional)
from .canonical import fill
from .layout import NCHW, layout_attr, layout_of, need_blocked
from .spatial import (canon_window, check_positive, conv_output_shape,
                      conv_transpose_output_shape, window_attrs)

_WINDOW = {"kernel_shape": None, "strides": None, "pads": None, "dilations": None}


def _conv_operands(kind, op):
    """Shared checks of X, W, B? for Conv/ConvTranspose; returns (x, w, spatial rank, attrs)."""
    x, w, b = operand(op, 0), operand(op, 1), operand(op, 2)
    need_float(kind, "X", x)
    same_dtype(kind, [x, w] + ([b] if b else []), ["X", "W", "B"])
    need_rank(kind, "X", x, min_rank=3)
    if w.rank != x.rank:
        raise OpRuleError(f"{kind}: W {fmt(w.shape)} must have the rank of X {fmt(x.shape)}")
    k = x.rank - 2
    a = window_attrs(op, k)
    if a["kernel_shape"] != list(w.shape[2:]):
        raise OpRuleError(f"{kind}: kernel_shape={a['kernel_shape']} does not match "
                          f"W {fmt(w.shape)}")
    a["group"] = attr_int(op, "group", 1)
    return x, w, b, a


def _conv_flops(op) -> int:
    # weights per output element: prod(W[1:]) = C/group·k...; a blocked W
    # [M/c, C/c|1, kh, kw, c|1, c] holds the same per output channel times the c lanes
    w = op.inputs[1].type
    return 2 * op.output.type.numel * math.prod(w.shape[1:]) // (layout_of(op).block or 1)


def _conv_transpose_flops(op) -> int:
    x, w = op.inputs[0].type, op.inputs[1].type
    return 2 * x.numel * math.prod(w.shape[1:])


def _gemm_flops(op) -> int:
    a = op.inputs[0].type
    k = a.shape[0] if op.attrs["transA"] else a.shape[1]
    return 2 * op.output.type.numel * k


def _matmul_flops(op) -> int:
    return 2 * op.output.type.numel * op.inputs[0].type.shape[-1]


CONTRACTION = ("contraction", "affine_foldable")


@opdef("Conv", ["X", "W", "B?"], {**_WINDOW, "group": 1, "layout": NCHW},
       traits=CONTRACTION + ("layout_aware",), canonicalize=canon_window("Conv"),
       flops=_conv_flops)
def _conv(op):
    """Conv(X[N,C,*], W[M,C/group,*k], B?[M]) -> [N,M,*out]; pads are begins then ends (the
    importer resolves auto_pad), every window attribute filled in; with layout NCHW{c}c the
    operands are blocked (README: the blocked layout)."""
    c = layout_attr(op)
    if c is not None:
        return [_blocked_conv(op, c)]
    x, w, b, a = _conv_operands("Conv", op)
    group, (m, cg), c = a["group"], w.shape[:2], x.shape[1]
    if cg * group != c:
        raise OpRuleError(f"Conv: input X has {c} channels but W {fmt(w.shape)} with "
                          f"group={group} expects {cg * group}")
    if m % group:
        raise OpRuleError(f"Conv: W {fmt(w.shape)} has {m} output channels, "
                          f"not divisible by group={group}")
    if b is not None:
        need_shape("Conv", "B", b, [m])
    out = conv_output_shape(x.shape[2:], a["kernel_shape"], a["strides"], a["pads"],
                            a["dilations"])
    check_positive("Conv", out, x.shape, a)
    return [TensorType(x.dtype, (x.shape[0], m) + out)]


def _blocked_conv(op, c):
    """Conv in NCHW{c}c: X[N,C/c,H,W,c], W[M/c,C/c,kh,kw,c,c] (group 1) or
    W[M/c,1,kh,kw,1,c] (depthwise: group = C = M), B?[M] -> [N,M/c,OH,OW,c].
    Group 1 also takes an NCHW input viewed as X[N,C,H,W,1] with W[M/c,C,kh,kw,1,c] (a
    stem conv with 3 input channels writes blocked output)."""
    x, w, b = operand(op, 0), operand(op, 1), operand(op, 2)
    need_float("Conv", "X", x)
    same_dtype("Conv", [x, w] + ([b] if b else []), ["X", "W", "B"])
    ci = x.shape[-1] if x.rank == 5 and x.shape[-1] == 1 and attr_int(op, "group", 1) == 1 \
        else c                       # input lanes per block
    need_blocked("Conv", "X", x, ci)
    if w.rank != 6 or w.shape[-1] != c:
        raise OpRuleError(f"Conv: layout NCHW{c}c needs a 6-D W [M/{c},C/{c},kh,kw,{c},{c}] "
                          f"(depthwise: [M/{c},1,kh,kw,1,{c}]), got {fmt(w.shape)}")
    a = window_attrs(op, 2)
    if a["kernel_shape"] != list(w.shape[2:4]):
        raise OpRuleError(f"Conv: kernel_shape={a['kernel_shape']} does not match "
                          f"W {fmt(w.shape)} (kh, kw are its axes 2 and 3 in layout NCHW{c}c)")
    group = attr_int(op, "group", 1)
    ch, m, (kh, kw) = x.shape[1] * ci, w.shape[0] * c, w.shape[2:4]
    if group == 1:
        want = (w.shape[0], x.shape[1], kh, kw, ci, c)
    elif group == ch == m:
        want = (w.shape[0], 1, kh, kw, 1, c)
    else:
        raise OpRuleError(f"Conv: layout NCHW{c}c supports group=1 and depthwise convolutions "
                          f"(group = C = M) only; got group={group} with C={ch}, M={m}")
    if w.shape != want:
        raise OpRuleError(f"Conv: W {fmt(w.shape)} does not fit X {fmt(x.shape)} with "
                          f"group={group} in layout NCHW{c}c; expected {fmt(want)}")
    if b is not None:
        need_shape("Conv", "B", b, [m])
    out = conv_output_shape(x.shape[2:4], a["kernel_shape"], a["strides"], a["pads"],
                            a["dilations"])
    check_positive("Conv", out, x.shape, a)
    return TensorType(x.dtype, (x.shape[0], w.shape[0]) + out + (c,))


@opdef("ConvTranspose", ["X", "W", "B?"], {**_WINDOW, "output_padding": None, "group": 1},
       traits=CONTRACTION, canonicalize=canon_window("ConvTranspose"),
       flops=_conv_transpose_flops)
def _conv_transpose(op):
    """ConvTranspose(X[N,C,*], W[C,M/group,*k], B?[M]) -> [N,M,*out]; ONNX's output_shape
    and auto_pad are resolved into pads and output_padding at import."""
    x, w, b, a = _conv_operands("ConvTranspose", op)
    group, c = a["group"], x.shape[1]
    if w.shape[0] != c:
        raise OpRuleError(f"ConvTranspose: input X has {c} channels but W {fmt(w.shape)} "
                          f"expects {w.shape[0]}")
    if c % group:
        raise OpRuleError(f"ConvTranspose: input X has {c} channels, "
                          f"not divisible by group={group}")
    m = w.shape[1] * group
    if b is not None:
        need_shape("ConvTranspose", "B", b, [m])
    k = x.rank - 2
    opad = attr_ints(op, "output_padding", k, 0, f"{k} spatial axes")
    for i, (p, s) in enumerate(zip(opad, a["strides"])):
        # onnxruntime's rule (stricter than PyTorch's "< stride or dilation"): a larger
        # padding would not map back to the input size under the forward convolution
        if p >= s:
            raise OpRuleError(f"ConvTranspose: output_padding[{i}]={p} must be smaller than "
                              f"the stride {s}")
    out = conv_transpose_output_shape(x.shape[2:], a["kernel_shape"], a["strides"], a["pads"],
                                      a["dilations"], opad)
    check_positive("ConvTranspose", out, x.shape, {**a, "output_padding": opad})
    return [TensorType(x.dtype, (x.shape[0], m) + out)]


@opdef("Gemm", ["A", "B", "C?"], {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
       traits=CONTRACTION, flops=_gemm_flops, onnx="same")
def _gemm(op):
    """Gemm: alpha * A' @ B' + beta * C, A' = A^T if transA, B' = B^T if transB; C -> [M,N]."""
    a, b, c = operand(op, 0), operand(op, 1), operand(op, 2)
    need_dtype("Gemm", "A", a, NUMERIC_DTYPES, "numeric (not bool)")
    same_dtype("Gemm", [a, b] + ([c] if c else []), ["A", "B", "C"])
    need_rank("Gemm", "A", a, 2)
    need_rank("Gemm", "B", b, 2)
    attr_float(op, "alpha")
    attr_float(op, "beta")
    ta, tb = attr_int(op, "transA", 0, 1), attr_int(op, "transB", 0, 1)
    m, ka = a.shape[::-1] if ta else a.shape
    kb, n = b.shape[::-1] if tb else b.shape
    if ka != kb:
        raise OpRuleError(f"Gemm: A {fmt(a.shape)} (transA={ta}) and B {fmt(b.shape)} "
                          f"(transB={tb}) have inner dimensions {ka} and {kb}")
    if c is not None:
        unidirectional("Gemm", "C", c.shape, (m, n))
    return [TensorType(a.dtype, (m, n))]


@opdef("MatMul", ["A", "B"], traits=("contraction",), flops=_matmul_flops, onnx="same")
def _matmul(op):
    """MatMul: numpy matmul (batched, batch dims broadcast, 1-D operands promoted)."""
    a, b = operand(op, 0), operand(op, 1)
    need_dtype("MatMul", "A", a, NUMERIC_DTYPES, "numeric (not bool)")
    same_dtype("MatMul", [a, b], ["A", "B"])
    if a.rank == 0 or b.rank == 0:
        raise OpRuleError(f"MatMul: operands must have rank >= 1, got A {fmt(a.shape)} "
                          f"and B {fmt(b.shape)}")
    sa = (1,) + a.shape if a.rank == 1 else a.shape
    sb = b.shape + (1,) if b.rank == 1 else b.shape
    if sa[-1] != sb[-2]:
        raise OpRuleError(f"MatMul: A {fmt(a.shape)} and B {fmt(b.shape)} have inner "
                          f"dimensions {sa[-1]} and {sb[-2]}")
    try:
        batch = broadcast_shapes(sa[:-2], sb[:-2])
    except OpRuleError:
        raise OpRuleError(f"MatMul: batch dimensions of A {fmt(a.shape)} and B {fmt(b.shape)} "
                          f"do not broadcast") from None
    out = batch + (sa[-2],) * (a.rank > 1) + (sb[-1],) * (b.rank > 1)
    return [TensorType(a.dtype, out)]


def _per_channel(kind, op, names, c):
    for i, name in enumerate(names, 1):
        t = operand(op, i)
        if t is not None:
            need_float(kind, name, t)
            need_shape(kind, name, t, [c])


@opdef("BatchNormalization", ["X", "scale", "B", "mean", "var"], {"epsilon": 1e-5},
       traits=("inplace_ok",))       # elementwise with per-channel constants
def _batch_norm(op):
    """BatchNormalization (inference): (X - mean) / sqrt(var + eps) * scale + B over axis 1."""
    x = operand(op, 0)
    need_float("BatchNormalization", "X", x)
    need_rank("BatchNormalization", "X", x, min_rank=2)
    attr_float(op, "epsilon")
    _per_channel("BatchNormalization", op, ["scale", "B", "mean", "var"], x.shape[1])
    return [x]


@opdef("InstanceNormalization", ["X", "scale", "B"], {"epsilon": 1e-5}, onnx="same")
def _instance_norm(op):
    """InstanceNormalization: normalizes each (n, c) over the spatial axes."""
    x = operand(op, 0)
    need_float("InstanceNormalization", "X", x)
    need_rank("InstanceNormalization", "X", x, min_rank=3)
    attr_float(op, "epsilon")
    _per_channel("InstanceNormalization", op, ["scale", "B"], x.shape[1])
    return [x]


def _group_norm_onnx(op, opset):
    """Opset 18 has a scale per group, 21 per channel and stash_type."""
    attrs = dict(op.attrs)
    if opset < 21:
        attrs.pop("stash_type")
    return (18 if op.inputs[1].type.shape[0] == op.attrs["num_groups"] else 21), attrs


@opdef("GroupNormalization", ["X", "scale", "bias"],
       {"num_groups": REQUIRED, "epsilon": 1e-5, "stash_type": 1}, onnx="same",
       onnx_form=_group_norm_onnx)
def _group_norm(op):
    """GroupNormalization: X[N,C,*] normalized over each group of C/num_groups channels
    (and the spatial axes), then scale and bias per channel ([C], opset 21) or per group
    ([num_groups], opset 18's form)."""
    x, s, b = operand(op, 0), operand(op, 1), operand(op, 2)
    need_float("GroupNormalization", "X", x)
    need_rank("GroupNormalization", "X", x, min_rank=3)
    g = attr_int(op, "num_groups", 1)
    attr_float(op, "epsilon")
    attr_int(op, "stash_type", 0, 1)
    c = x.shape[1]
    if c % g:
        raise OpRuleError(f"GroupNormalization: {c} channels of X {fmt(x.shape)} are not "
                          f"divisible by num_groups={g}")
    for name, t in (("scale", s), ("bias", b)):
        same_dtype("GroupNormalization", [x, t], ["X", name])
        if t.shape not in ((c,), (g,)):
            raise OpRuleError(f"GroupNormalization: {name} must have shape [{c}] (per "
                              f"channel) or [{g}] (per group), got {fmt(t.shape)}")
    return [x]


def _last_axis(a, types, n):
    if types and types[0] is not None:
        fill(a, "axis", types[0].rank - 1)


@opdef("LayerNormalization", ["X", "scale", "B?"], {"axis": None, "epsilon": 1e-5},
       canonicalize=_last_axis)
def _layer_norm(op):
    """LayerNormalization over axes [axis, rank); scale/B broadcast to X.shape[axis:]."""
    x, s, b = operand(op, 0), operand(op, 1), operand(op, 2)
    need_float("LayerNormalization", "X", x)
    axis = attr_axis(op, "axis", x.rank)
    attr_float(op, "epsilon")
    for name, t in (("scale", s), ("B", b)):
        if t is not None:
            same_dtype("LayerNormalization", [x, t], ["X", name])
            unidirectional("LayerNormalization", name, t.shape, x.shape[axis:])
    return [x]


@opdef("LRN", ["X"], {"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0,
                      "layout": NCHW}, traits=("layout_aware",), onnx="same")
def _lrn(op):
    """LRN: local response normalization across `size` neighbouring channels (of the
    blocked [N,C/c,H,W,c] with layout NCHW{c}c: channel cb*c + i)."""
    x = operand(op, 0)
    need_float("LRN", "X", x)
    c = layout_attr(op)
    if c is None:
        need_rank("LRN", "X", x, min_rank=3)
    else:
        need_blocked("LRN", "X", x, c)
    attr_int(op, "size", 1)
    for name in ("alpha", "beta", "bias"):
        attr_float(op, name)
    return [x]
