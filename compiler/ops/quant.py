"""int8 ops: the boundaries (QuantizeLinear, DequantizeLinear) and the integer ops the
quantize-int8 pass and the QDQ / QOperator importer produce. Their arithmetic is in
compiler/quant.py (shared by the reference kernels and the TVM lowering).

Quantized values are per-tensor u8 or i8 (activations) or per-channel i8 with zero point 0
(weights); the parameters live on the value's type: `u8[1,16,8,8]<scale=[0.02],
zero_point=[128]>`. An integer op names its result's parameters with the attributes
`scale`, `zero_point` and `to`; `clamp` = [lo, hi] bounds the integer result (a fused ReLU
or ReLU6, or the full range of `to`). Per-channel constants a kernel needs are operands
(weights), like the weights themselves: QConv's and QMatMul's requantization multipliers M
(float32, compiler/quant.conv_multipliers of the scales: the verifier checks they agree) and
QLookup's table.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import QuantParams, TensorType
from ..opdef import REQUIRED, OpRuleError, opdef
from ..quant import QDTYPES, conv_multipliers, qrange
from ._util import (attr_axis, attr_int, attr_ints, broadcast_shapes, fmt, need_float,
                    need_rank, need_shape, operand)
from .spatial import (canon_window, check_positive, conv_output_shape, pool_output_shape,
                      window_attrs)

QUANTIZED = ("quantized",)
QUANT_ELEMENTWISE = ("quantized", "elementwise")
_OUT = {"scale": REQUIRED, "zero_point": REQUIRED, "to": REQUIRED}
_OUT_CLAMPED = {**_OUT, "clamp": None}


def _canon_clamp(a, types, n):
    if a.get("clamp") is None and a.get("to") in QDTYPES:
        a["clamp"] = list(qrange(a["to"]))


def _result_type(op, shape) -> TensorType:
    """The integer result: dtype `to`, per-tensor parameters scale / zero_point."""
    to = op.attrs.get("to")
    if to not in QDTYPES:
        raise OpRuleError(f"{op.kind}: to={to!r} must be one of {list(QDTYPES)}")
    scale = op.attrs.get("scale")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not \
            (scale > 0 and math.isfinite(scale)):
        raise OpRuleError(f"{op.kind}: scale={scale!r} must be a positive finite number")
    lo, hi = qrange(to)
    zp = attr_int(op, "zero_point", lo, hi)
    if "clamp" in op.attrs:
        c = attr_ints(op, "clamp", 2)
        if not lo <= c[0] <= c[1] <= hi:
            raise OpRuleError(f"{op.kind}: clamp={c} must lie in [{lo}, {hi}] with lo <= hi")
    return TensorType(to, tuple(shape), QuantParams((float(scale),), (zp,), None))


def need_quantized(kind: str, what: str, t: TensorType, per_tensor: bool = True) -> None:
    if t.quant is None or t.dtype not in QDTYPES:
        raise OpRuleError(f"{kind}: {what} must be a quantized u8/i8 tensor, got {t}")
    if per_tensor and t.quant.axis is not None:
        raise OpRuleError(f"{kind}: {what} must be quantized per tensor, got {t}")


def _need_weights(kind: str, w: TensorType, channels: int, axis: int) -> None:
    """Weights: i8, zero point 0, per tensor or per output channel along `axis`."""
    if w.dtype != "i8" or w.quant is None:
        raise OpRuleError(f"{kind}: W must be i8 with quantization parameters, got {w}")
    q = w.quant
    if any(z != 0 for z in q.zero_point):
        raise OpRuleError(f"{kind}: W must be quantized symmetrically (zero point 0)")
    if q.axis is not None and (q.axis != axis or len(q.scale) != channels):
        raise OpRuleError(f"{kind}: W's scales must be per tensor or one per output channel "
                          f"(axis {axis}, {channels}), got axis {q.axis} with {len(q.scale)}")


def _need_bias(kind: str, b: TensorType, channels: int) -> None:
    if b.dtype != "i32":
        raise OpRuleError(f"{kind}: B must be i32 (in the accumulator's scale), got {b}")
    need_shape(kind, "B", b, [channels])


def _need_multipliers(op, x: TensorType, w: TensorType, channels: int) -> None:
    """M f32[channels] must be float32(sx * sw[c] / s) (compiler/quant.conv_multipliers)."""
    mv = op.inputs[3]
    m = mv.type
    if m.dtype != "f32" or m.shape != (channels,):
        raise OpRuleError(f"{op.kind}: M must be f32[{channels}] (requantization multipliers), "
                          f"got {m}")
    if mv.data is not None:
        scale = op.attrs.get("scale")
        sw = w.quant.scale if len(w.quant.scale) == channels else w.quant.scale * channels
        want = conv_multipliers(x.quant.scale[0], sw, scale)
        if not np.array_equal(np.asarray(mv.data, np.float32), want):
            raise OpRuleError(f"{op.kind}: M does not match the scales (X {x.quant.scale[0]:g}, "
                              f"W, result {scale:g}): it must be conv_multipliers(...)")


@opdef("QuantizeLinear", ["X"], {"scale": REQUIRED, "zero_point": REQUIRED, "axis": None,
                                 "to": REQUIRED}, traits=("elementwise",))
def _quantize_linear(op):
    """QuantizeLinear(X float) -> to: rint(X / scale) + zero_point, saturated; scale and
    zero_point are lists (one value, or one per index of `axis`)."""
    x = operand(op, 0)
    need_float("QuantizeLinear", "X", x)
    to = op.attrs.get("to")
    if to not in QDTYPES:
        raise OpRuleError(f"QuantizeLinear: to={to!r} must be one of {list(QDTYPES)}")
    scale, zp = attr_floats(op, "scale"), attr_ints(op, "zero_point")
    axis = op.attrs.get("axis")
    n = 1
    if axis is not None:
        axis = attr_axis(op, "axis", x.rank)
        n = x.shape[axis]
    if len(scale) != n or len(zp) != n:
        raise OpRuleError(f"QuantizeLinear: scale and zero_point need {n} value(s), got "
                          f"{len(scale)} and {len(zp)}")
    lo, hi = qrange(to)
    if not all(s > 0 and math.isfinite(s) for s in scale) or not all(lo <= z <= hi for z in zp):
        raise OpRuleError(f"QuantizeLinear: scales must be positive and zero points in "
                          f"[{lo}, {hi}]")
    quant = QuantParams(tuple(scale), tuple(zp), axis if n > 1 or axis is not None else None)
    return [TensorType(to, x.shape, quant)]


def attr_floats(op, name) -> list[float]:
    x = op.attrs.get(name)
    if not isinstance(x, (list, tuple)) or not x or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
        raise OpRuleError(f"{op.kind}: attribute '{name}' must be a list of numbers, got {x!r}")
    return [float(v) for v in x]


@opdef("DequantizeLinear", ["X"], traits=QUANT_ELEMENTWISE)
def _dequantize_linear(op):
    """DequantizeLinear(X quantized) -> f32: (X - zero_point) * scale, by X's parameters."""
    x = operand(op, 0)
    if not (x.dtype == "i32" and x.quant is not None):     # (an int32 bias: i32 too)
        need_quantized("DequantizeLinear", "X", x, per_tensor=False)
    return [TensorType("f32", x.shape)]


def _canon_qconv(a, types, n):
    canon_window("Conv")(a, types, n)
    _canon_clamp(a, types, n)


def _qconv_flops(op) -> int:
    return 2 * op.output.type.numel * math.prod(op.inputs[1].type.shape[1:])


@opdef("QConv", ["X", "W", "B", "M"], {"kernel_shape": None, "strides": None, "pads": None,
                                   "dilations": None, "group": 1, **_OUT_CLAMPED},
       traits=("quantized", "contraction"), flops=_qconv_flops, canonicalize=_canon_qconv)
def _qconv(op):
    """QConv(X q[N,C,*], W i8[M,C/group,*k], B i32[M], M f32[M]) -> to[N,M,*out]: the int32
    sum of (X - zero_point_X) * W + B, then clamp(rint(float32(acc) * M[m]) + zero_point)
    (compiler/quant.py); padding reads real zero."""
    x, w, b = operand(op, 0), operand(op, 1), operand(op, 2)
    need_quantized("QConv", "X", x)
    need_rank("QConv", "X", x, min_rank=3)
    if w.rank != x.rank:
        raise OpRuleError(f"QConv: W {fmt(w.shape)} must have the rank of X {fmt(x.shape)}")
    k = x.rank - 2
    a = window_attrs(op, k)
    if a["kernel_shape"] != list(w.shape[2:]):
        raise OpRuleError(f"QConv: kernel_shape={a['kernel_shape']} does not match "
                          f"W {fmt(w.shape)}")
    group = attr_int(op, "group", 1)
    m, cg = w.shape[:2]
    if cg * group != x.shape[1] or m % group:
        raise OpRuleError(f"QConv: X has {x.shape[1]} channels, W {fmt(w.shape)} with "
                          f"group={group} expects {cg * group} (and M divisible by group)")
    _need_weights("QConv", w, m, 0)
    _need_bias("QConv", b, m)
    out = conv_output_shape(x.shape[2:], a["kernel_shape"], a["strides"], a["pads"],
                            a["dilations"])
    check_positive("QConv", out, x.shape, a)
    out_type = _result_type(op, (x.shape[0], m) + out)
    _need_multipliers(op, x, w, m)
    return [out_type]


@opdef("QMatMul", ["A", "B", "C", "M"], _OUT_CLAMPED, traits=("quantized", "contraction"),
       canonicalize=_canon_clamp,
       flops=lambda op: 2 * op.output.type.numel * op.inputs[1].type.shape[0])
def _qmatmul(op):
    """QMatMul(A q[..., K], B i8[K, N], C i32[N], M f32[N]) -> to[..., N]: the int32 sum of
    (A - zero_point_A) * B + C, requantized per output column like QConv."""
    a, b, c = operand(op, 0), operand(op, 1), operand(op, 2)
    need_quantized("QMatMul", "A", a)
    need_rank("QMatMul", "B", b, 2)
    if a.rank < 1 or a.shape[-1] != b.shape[0]:
        raise OpRuleError(f"QMatMul: A {fmt(a.shape)} and B {fmt(b.shape)} do not agree on K")
    _need_weights("QMatMul", b, b.shape[1], 1)
    _need_bias("QMatMul", c, b.shape[1])
    out_type = _result_type(op, a.shape[:-1] + (b.shape[1],))
    _need_multipliers(op, a, b, b.shape[1])
    return [out_type]


def _binary(kind):
    def infer(op):
        a, b = operand(op, 0), operand(op, 1)
        need_quantized(kind, "A", a)
        need_quantized(kind, "B", b)
        try:
            shape = broadcast_shapes(a.shape, b.shape)
        except ValueError as e:
            raise OpRuleError(f"{kind}: {e}") from None
        if kind == "QAdd" and op.attrs.get("b_sign") not in (1, -1):
            raise OpRuleError(f"QAdd: b_sign={op.attrs.get('b_sign')!r} must be 1 or -1")
        return [_result_type(op, shape)]
    return infer


_BINARY_DOC = {
    "QAdd": "QAdd(A q, B q) -> to: clamp(rint(float64(A - zA) * MA + float64(B - zB) * MB) + z), "
            "MA = float32(sA / s), MB = b_sign * float32(sB / s) (b_sign -1: A - B); numpy "
            "broadcasting.",
    "QMul": "QMul(A q, B q) -> to: clamp(rint(float64((A - zA) * (B - zB)) * M) + z), "
            "M = float32(sA * sB / s); numpy broadcasting.",
}
for _kind in ("QAdd", "QMul"):
    _f = _binary(_kind)
    _f.__doc__ = _BINARY_DOC[_kind]
    opdef(_kind, ["A", "B"], {**_OUT_CLAMPED, **({"b_sign": 1} if _kind == "QAdd" else {})},
          traits=QUANT_ELEMENTWISE, canonicalize=_canon_clamp)(_f)


@opdef("QLookup", ["X", "table"], {"fn": "", **_OUT}, traits=QUANT_ELEMENTWISE)
def _qlookup(op):
    """QLookup(X q, table to[256] or to[C, 256]) -> to: table[X - lowest(X's dtype)], or
    table[c, X - lowest] for an element of channel c (axis 1 of X): any function of one
    quantized value (Sigmoid, HardSwish, LeakyRelu, a requantization...), or of one value and
    its channel (BatchNormalization, x * c[C,1,1]...), as its 256 results, computed at build
    time by the reference definition; `fn` names it (for reading)."""
    x, t = operand(op, 0), operand(op, 1)
    need_quantized("QLookup", "X", x)
    out = _result_type(op, x.shape)
    shapes = [(256,)] + ([(x.shape[1], 256)] if x.rank >= 2 else [])
    if t.dtype != out.dtype or t.shape not in shapes or t.quant is not None:
        raise OpRuleError(f"QLookup: table must be a plain {out.dtype}"
                          f"{' or '.join(str(list(s)) for s in shapes)}, got {t}")
    return [out]


@opdef("QGlobalAveragePool", ["X"], _OUT, traits=("quantized", "pool", "reduction"))
def _qgap(op):
    """QGlobalAveragePool(X q[N,C,*]) -> to[N,C,1,..]: clamp(rint(float64(sum(X - zX)) *
    M / count) + z), M = float32(sX / s)."""
    x = operand(op, 0)
    need_quantized("QGlobalAveragePool", "X", x)
    need_rank("QGlobalAveragePool", "X", x, min_rank=3)
    return [_result_type(op, x.shape[:2] + (1,) * (x.rank - 2))]


@opdef("QAveragePool", ["X"], {"kernel_shape": REQUIRED, "strides": None, "pads": None,
                               "dilations": None, "ceil_mode": 0, "count_include_pad": 0,
                               **_OUT},
       traits=("quantized", "pool"), canonicalize=canon_window("AveragePool"))
def _qavgpool(op):
    """QAveragePool(X q) -> to: AveragePool's windows and divisor (count_include_pad) on
    X - zX, then clamp(rint(float64(sum) * M / count) + z), M = float32(sX / s)."""
    x = operand(op, 0)
    need_quantized("QAveragePool", "X", x)
    need_rank("QAveragePool", "X", x, min_rank=3)
    k = x.rank - 2
    a = window_attrs(op, k)
    attr_int(op, "count_include_pad", 0, 1)
    ceil = attr_int(op, "ceil_mode", 0, 1)
    out = pool_output_shape(x.shape[2:], a["kernel_shape"], a["strides"], a["pads"],
                            a["dilations"], ceil)
    check_positive("QAveragePool", out, x.shape, a)
    return [_result_type(op, x.shape[:2] + out)]
