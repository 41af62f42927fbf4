"""Importing quantized ONNX models: the QDQ format (QuantizeLinear / DequantizeLinear around
float ops, as onnxruntime's quantize_static writes it) and the QOperator format (QLinearConv,
QLinearMatMul and com.microsoft's QLinearAdd, QLinearMul, QLinearGlobalAveragePool, ...).

Both import as QDQ: a QOperator node becomes DequantizeLinear of its operands, the float op
and QuantizeLinear of its result, which is its definition. DequantizeLinear of a constant
(int8 weights, int32 biases) stays an op, so that fold-qdq (run right after import) can turn
each DequantizeLinear → op → QuantizeLinear into the int8 op without re-calibration.
"""
from __future__ import annotations

import numpy as np

from .ir import QuantParams, TensorType, Value
from .onnx_import_ops import converter
from .quant import QDTYPES

MICROSOFT_OPS = ("QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearSigmoid",
                 "QLinearLeakyRelu", "QLinearSoftmax", "QLinearConcat", "QLinearAveragePool")
_DTYPE = {np.dtype(np.uint8): "u8", np.dtype(np.int8): "i8", np.dtype(np.int32): "i32"}


def _params(ctx, scale_i: int, zp_i: int | None, axis: int | None, rank: int | None,
            dtype_hint: str = "u8"):
    """(QuantParams, dtype) from constant scale / zero point operands."""
    scale = ctx.const(scale_i, "scale")
    if scale is None:
        raise ctx.error("the scale operand is required")
    scale = np.asarray(scale, np.float32).reshape(-1)
    zp = ctx.const(zp_i, "zero point") if zp_i is not None else None
    dtype = _DTYPE.get(np.asarray(zp).dtype, dtype_hint) if zp is not None else dtype_hint
    zp = np.zeros(scale.size, np.int64) if zp is None else np.asarray(zp).reshape(-1)
    if scale.size != zp.size:
        raise ctx.error(f"{scale.size} scale(s) but {zp.size} zero point(s)")
    if not np.all(scale > 0) or not np.all(np.isfinite(scale)):
        raise ctx.error("scales must be positive and finite")
    if scale.size > 1 and (axis is None or rank is None):
        raise ctx.error("per-axis parameters need an axis")
    ax = None
    if scale.size > 1:
        ax = int(axis) + (rank if int(axis) < 0 else 0)
    return QuantParams(tuple(float(s) for s in scale), tuple(int(z) for z in zp), ax), dtype


def quantize_to(ctx, x: Value, q: QuantParams, dtype: str, out: str | None, suffix: str):
    if dtype not in QDTYPES:
        raise ctx.error(f"quantizing to {dtype} is not supported (u8 or i8)")
    return ctx.emit("QuantizeLinear", [x], {"scale": list(q.scale),
                                            "zero_point": list(q.zero_point),
                                            "axis": q.axis, "to": dtype},
                    None if out is None else [out], suffix)[0]


def dequantize_value(ctx, x: Value, q: QuantParams, dtype: str, suffix: str,
                     out: str | None = None) -> Value:
    """DequantizeLinear of x read with parameters q: a constant gets them on its type; an
    activation must already carry the same ones (it comes from a QuantizeLinear)."""
    if x.data is not None:
        if np.asarray(x.data).dtype != np.dtype({"u8": np.uint8, "i8": np.int8,
                                                 "i32": np.int32}.get(dtype, np.uint8)):
            raise ctx.error(f"a {x.data.dtype} constant cannot be dequantized as {dtype}")
        typed = Value(ctx.tmp(f"{x.name}_q"), TensorType(dtype, x.type.shape, q), data=x.data)
    else:
        if x.type.quant is None:
            raise ctx.error(f"operand %{x.name} ({x.type}) is not a quantized value: only "
                            f"results of QuantizeLinear (or constants) can be dequantized")
        if x.type.quant != q or x.type.dtype != dtype:
            raise ctx.error(f"operand %{x.name} is quantized with {x.type.quant}, the node "
                            f"reads it with {q}; re-quantization between them is not "
                            f"supported")
        typed = x
    return ctx.emit("DequantizeLinear", [typed], {}, None if out is None else [out], suffix,
                    fold=False)[0]


@converter("QuantizeLinear")
def _quantize_linear(ctx):
    x = ctx.input(0, "x")
    q, dtype = _params(ctx, 1, 2 if ctx.n_inputs > 2 else None, ctx.attr("axis", 1),
                       x.type.rank)
    return [quantize_to(ctx, x, q, dtype, ctx.out(0), "")]


@converter("DequantizeLinear")
def _dequantize_linear(ctx):
    x = ctx.input(0, "x")
    hint = x.type.dtype if x.type.dtype in ("u8", "i8", "i32") else "u8"
    q, dtype = _params(ctx, 1, 2 if ctx.n_inputs > 2 else None, ctx.attr("axis", 1),
                       x.type.rank, hint)
    if x.data is not None:
        dtype = x.type.dtype
    return [dequantize_value(ctx, x, q, dtype, "", ctx.out(0))]


def _dq(ctx, i: int, s: int, z: int, axis=None, suffix=""):
    x = ctx.input(i, f"operand {i}")
    hint = x.type.dtype if x.type.dtype in ("u8", "i8", "i32") else "u8"
    q, dtype = _params(ctx, s, z, axis, x.type.rank, hint)
    return dequantize_value(ctx, x, q, x.type.dtype if x.data is not None else dtype,
                            suffix or f"/dq{i}")


def _q_out(ctx, y: Value, s: int, z: int):
    q, dtype = _params(ctx, s, z, None, y.type.rank)
    return [quantize_to(ctx, y, q, dtype, ctx.out(0), "/q")]


@converter("QLinearConv")
def _qlinear_conv(ctx):
    # x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B
    x = _dq(ctx, 0, 1, 2)
    w = _dq(ctx, 3, 4, 5, axis=0)
    ins = [x, w]
    if ctx.n_inputs > 8 and ctx.input(8) is not None:
        b = ctx.input(8)
        sx = np.asarray(ctx.const(1, "x_scale"), np.float32).reshape(-1)
        sw = np.asarray(ctx.const(4, "w_scale"), np.float32).reshape(-1)
        bq = QuantParams(tuple(float(v) for v in np.broadcast_to(sx * sw, b.type.shape)),
                         (0,) * b.type.shape[0], 0 if b.type.shape[0] > 1 else None)
        if bq.axis is None:
            bq = QuantParams(bq.scale[:1], (0,), None)
        ins.append(dequantize_value(ctx, b, bq, "i32", "/dq_bias"))
    attrs = {k: v for k, v in ctx.attrs.items() if k in ("kernel_shape", "strides", "pads",
                                                          "dilations", "group", "auto_pad")}
    y = _float_conv(ctx, ins, attrs)
    return _q_out(ctx, y, 6, 7)


def _float_conv(ctx, ins, attrs):
    from .onnx_import_ops import _spatial_pads, _window
    x = ins[0]
    n = x.type.rank - 2
    kernel = attrs.get("kernel_shape") or list(ins[1].type.shape[2:])
    kernel, strides, dil = _window(ctx, n, kernel)
    pads = _spatial_pads(ctx, x.type.shape[2:], kernel, strides, dil)
    return ctx.emit("Conv", ins, dict(kernel_shape=kernel, strides=strides, pads=pads,
                                      dilations=dil, group=int(ctx.attr("group", 1))),
                    None, "/conv")[0]


@converter("QLinearMatMul")
def _qlinear_matmul(ctx):
    a = _dq(ctx, 0, 1, 2)
    b = _dq(ctx, 3, 4, 5, axis=-1)
    y = ctx.emit("MatMul", [a, b], {}, None, "/matmul")[0]
    return _q_out(ctx, y, 6, 7)


@converter("QLinearAdd", "QLinearMul")
def _qlinear_binary(ctx):
    # A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp (com.microsoft)
    a, b = _dq(ctx, 0, 1, 2), _dq(ctx, 3, 4, 5)
    y = ctx.emit("Add" if ctx.kind == "QLinearAdd" else "Mul", [a, b], {}, None, "/op")[0]
    return _q_out(ctx, y, 6, 7)


@converter("QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
           "QLinearSoftmax", "QLinearAveragePool")
def _qlinear_unary(ctx):
    # X, X_scale, X_zp, Y_scale, Y_zp (com.microsoft)
    if ctx.attr("channels_last", 0):
        raise ctx.error("channels_last=1 is not supported")
    x = _dq(ctx, 0, 1, 2)
    kind = ctx.kind[len("QLinear"):]
    attrs = {}
    if kind == "LeakyRelu":
        attrs["alpha"] = float(ctx.attr("alpha", 0.01))
    elif kind == "Softmax":
        axis = int(ctx.attr("axis", -1))
        attrs["axis"] = axis + x.type.rank if axis < 0 else axis
    elif kind == "AveragePool":
        from .onnx_import_ops import _spatial_pads, _window
        n = x.type.rank - 2
        kernel, strides, dil = _window(ctx, n, ctx.attr("kernel_shape"))
        attrs = dict(kernel_shape=kernel, strides=strides,
                     pads=_spatial_pads(ctx, x.type.shape[2:], kernel, strides, dil),
                     ceil_mode=int(ctx.attr("ceil_mode", 0)),
                     count_include_pad=int(ctx.attr("count_include_pad", 0)))
    y = ctx.emit(kind, [x], attrs, None, "/op")[0]
    return _q_out(ctx, y, 3, 4)


@converter("QLinearConcat")
def _qlinear_concat(ctx):
    # Y_scale, Y_zp, then (X, X_scale, X_zp) per input (com.microsoft)
    parts = [_dq(ctx, i, i + 1, i + 2, suffix=f"/dq{i}") for i in range(2, ctx.n_inputs, 3)]
    axis = int(ctx.attr("axis"))
    rank = parts[0].type.rank
    y = ctx.emit("Concat", parts, {"axis": axis + rank if axis < 0 else axis}, None,
                 "/concat")[0]
    return _q_out(ctx, y, 0, 1)
