"""int8 ops → ONNX QDQ: each integer op becomes DequantizeLinear of its operands, the float op,
and QuantizeLinear to its result's parameters, so an int8 graph runs in onnxruntime (and
imports back through fold-qdq). The float op rounds once where the integer op requantizes, so
onnxruntime's results may differ from edgecc's by one step where a value lands on a rounding
boundary. QLookup is a Gather from its table. Values moved by MaxPool, Reshape, Concat ...
stay integer tensors (ONNX has those ops for u8 / i8).
"""
from __future__ import annotations

import numpy as np

from .dtypes import dtype_to_numpy
from .ir import Op, TensorType, Value
from .quant import qrange

QUANT_RULES = {}        # op kind -> fn(exporter, op, input names, output names); onnx_export
                        # registers them (this module does not import it: no cycle)


def _rule(*kinds):
    def register(fn):
        for k in kinds:
            QUANT_RULES[k] = fn
        return fn
    return register


def _qparams(ex, t: TensorType, base: str) -> tuple[list[str], dict]:
    """(scale, zero point) operands and the axis attribute of a quantized type."""
    q = t.quant
    per_axis = q.axis is not None
    scale = np.asarray(q.scale, np.float32) if per_axis else np.float32(q.scale[0])
    zp = np.asarray(q.zero_point if per_axis else q.zero_point[0], dtype_to_numpy(t.dtype))
    return [ex.const(scale, f"{base}_scale"), ex.const(zp, f"{base}_zero_point")], \
        ({"axis": q.axis} if per_axis else {})


def dequantized(ex, v: Value, name: str, base: str) -> str:
    out = ex.tmp(f"{name}_dq")
    params, attrs = _qparams(ex, v.type, f"{base}/{v.name}")
    ex.node("DequantizeLinear", [name] + params, [out], f"{base}/dq_{v.name}", **attrs)
    return out


def _result(ex, op: Op, real: str, out: str):
    """Clip to the op's clamp (a fused ReLU / ReLU6), then QuantizeLinear into `out`."""
    t = op.output.type
    s, zp = t.quant.scale[0], t.quant.zero_point[0]
    clamp = op.attrs.get("clamp")
    if clamp is not None and list(clamp) != list(qrange(t.dtype)):
        clipped = ex.tmp(f"{out}_clip")
        ex.node("Clip", [real, ex.const(np.float32((clamp[0] - zp) * s), f"{op.name}_lo"),
                         ex.const(np.float32((clamp[1] - zp) * s), f"{op.name}_hi")],
                [clipped], f"{op.name}/clamp")
        real = clipped
    params, _ = _qparams(ex, t, op.name or out)
    ex.node("QuantizeLinear", [real] + params, [out], f"{op.name}/q")


@_rule("QuantizeLinear")
def _quantize(ex, op, ins, outs):
    params, attrs = _qparams(ex, op.output.type, op.name or outs[0])
    ex.node("QuantizeLinear", ins + params, outs, op.name, **attrs)


@_rule("DequantizeLinear")
def _dequantize(ex, op, ins, outs):
    params, attrs = _qparams(ex, op.inputs[0].type, op.name or outs[0])
    ex.node("DequantizeLinear", ins + params, outs, op.name, **attrs)


def _bias(ex, op: Op, x: Value, w: Value, b_name: str, n: int) -> str:
    """The int32 bias dequantized with the accumulator's scales sx * sw[c]."""
    sw = np.asarray(w.type.quant.scale, np.float64)
    sw = np.full(n, sw[0]) if sw.size == 1 else sw
    scale = (np.float64(x.type.quant.scale[0]) * sw).astype(np.float32)
    out = ex.tmp(f"{b_name}_dq")
    ex.node("DequantizeLinear", [b_name, ex.const(scale, f"{op.name}_bias_scale"),
                                 ex.const(np.zeros(n, np.int32), f"{op.name}_bias_zero_point")],
            [out], f"{op.name}/dq_bias", axis=0)
    return out


@_rule("QConv")
def _qconv(ex, op, ins, outs):
    x, w = op.inputs[0], op.inputs[1]
    m = w.type.shape[0]
    attrs = {k: v for k, v in op.attrs.items()
             if k in ("kernel_shape", "strides", "pads", "dilations", "group")}
    real = ex.tmp(f"{outs[0]}_real")
    ex.node("Conv", [dequantized(ex, x, ins[0], op.name), dequantized(ex, w, ins[1], op.name),
                     _bias(ex, op, x, w, ins[2], m)], [real], op.name, **attrs)
    _result(ex, op, real, outs[0])


@_rule("QMatMul")
def _qmatmul(ex, op, ins, outs):
    a, b = op.inputs[0], op.inputs[1]
    prod, real = ex.tmp(f"{outs[0]}_prod"), ex.tmp(f"{outs[0]}_real")
    ex.node("MatMul", [dequantized(ex, a, ins[0], op.name), dequantized(ex, b, ins[1], op.name)],
            [prod], op.name)
    ex.node("Add", [prod, _bias(ex, op, a, b, ins[2], b.type.shape[1])], [real],
            f"{op.name}/bias")
    _result(ex, op, real, outs[0])


@_rule("QAdd", "QMul")
def _qbinary(ex, op, ins, outs):
    kind = "Mul" if op.kind == "QMul" else ("Sub" if op.attrs.get("b_sign") == -1 else "Add")
    real = ex.tmp(f"{outs[0]}_real")
    ex.node(kind, [dequantized(ex, v, n, op.name) for v, n in zip(op.inputs, ins)], [real],
            op.name)
    _result(ex, op, real, outs[0])


@_rule("QGlobalAveragePool", "QAveragePool")
def _qpool(ex, op, ins, outs):
    kind = op.kind[1:]
    attrs = {k: v for k, v in op.attrs.items()
             if k not in ("scale", "zero_point", "to", "clamp", "layout")}
    if all(d == 1 for d in attrs.get("dilations") or []):
        attrs.pop("dilations", None)            # (AveragePool has them from opset 19)
    real = ex.tmp(f"{outs[0]}_real")
    ex.node(kind, [dequantized(ex, op.inputs[0], ins[0], op.name)], [real], op.name, **attrs)
    _result(ex, op, real, outs[0])


@_rule("QLookup")
def _qlookup(ex, op, ins, outs):
    """Gather(table, x - lowest): a [C, 256] table is flattened and indexed by
    channel * 256 + x - lowest."""
    x, table = op.inputs
    lo = qrange(x.type.dtype)[0]
    idx, wide = ex.tmp(f"{outs[0]}_index"), ex.tmp(f"{outs[0]}_i32")
    ex.node("Cast", [ins[0]], [wide], f"{op.name}/index", to=6)      # INT32
    offset = np.int32(-lo)
    flat = ins[1]
    if table.type.rank == 2:
        c = table.type.shape[0]
        shape = (1, c) + (1,) * (x.type.rank - 2)
        offset = (np.arange(c, dtype=np.int32) * 256 - lo).reshape(shape)
        flat = ex.tmp(f"{ins[1]}_flat")
        ex.node("Reshape", [ins[1], ex.ints([-1], f"{op.name}_flat_shape")], [flat],
                f"{op.name}/flat")
    ex.node("Add", [wide, ex.const(offset, f"{op.name}_offset")], [idx],
            f"{op.name}/offset")
    ex.node("Gather", [flat, idx], outs, op.name, axis=0)
