"""TE lowerings of the int8 ops: the same integer arithmetic as the reference kernels
(kernels/quant.py; the constants and the reasoning in compiler/quant.py), so the compiled
kernels match them bit for bit. Accumulation in int32; requantization as
clamp(rint(float32(acc) * M) + z), with the clamp applied to the rounded value before the
integer conversion (so no conversion overflows); QAdd sums exact float64 products."""
from __future__ import annotations

from tvm import te, tirx

from edgecc.backends.tvm.lower_nn import pad_tensor
from edgecc.backends.tvm.lower_pool import pool_windows, window_count
from edgecc.backends.tvm.te_rules import bcast_index, const, lowering, out_type
from edgecc.errors import ModelError
from edgecc.quant import qrange, ratio

I32, F32, F64 = "int32", "float32", "float64"


def _zp(t) -> int:
    return int(t.quant.zero_point[0])


def _finish(r, op, dt, dtype: str = F32):
    """clamp(r + z) into the op's clamp range, from the rounded float r (dtype)."""
    lo, hi = op.attrs.get("clamp") or qrange(op.output.type.dtype)
    zp = int(op.attrs["zero_point"])
    r = tirx.min(tirx.max(r, const(float(lo - zp), dtype)), const(float(hi - zp), dtype))
    return (r.astype(I32) + const(zp, I32)).astype(dt)


def _per_tensor(op, t, what):
    if t.quant.axis is not None and len(t.quant.scale) > 1:
        raise ModelError(f"{op.describe()}: {what} quantized per axis is not supported by "
                         f"the TVM backend for a computed tensor (weights are folded at build "
                         f"time)")


@lowering("QuantizeLinear")
def _quantize_linear(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    _per_tensor(op, op.output.type, "QuantizeLinear's result")
    q = op.output.type.quant
    lo, hi = qrange(op.output.type.dtype)
    zp = int(q.zero_point[0])

    def body(*i):
        v = tirx.nearbyint(x(*i).astype(F32) / const(float(q.scale[0]), F32))
        v = tirx.Select(tirx.isnan(v), const(0.0, F32), v)
        v = tirx.min(tirx.max(v, const(float(lo - zp), F32)), const(float(hi - zp), F32))
        return (v.astype(I32) + const(zp, I32)).astype(dt)
    return [te.compute(shape, body, name="quantize")]


@lowering("DequantizeLinear")
def _dequantize_linear(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    t = op.inputs[0].type
    _per_tensor(op, t, "DequantizeLinear's operand")
    zp, s = _zp(t), float(t.quant.scale[0])
    return [te.compute(shape, lambda *i: ((x(*i).astype(I32) - const(zp, I32)).astype(F32)
                                          * const(s, F32)).astype(dt), name="dequantize")]


@lowering("QConv")
def _qconv(op, ins, target):
    x, w, b, m = ins
    shape, dt = out_type(op)
    nsp = len(shape) - 2
    strides, dil = op.attrs["strides"], op.attrs["dilations"]
    pads, group = op.attrs["pads"], int(op.attrs["group"])
    zx = _zp(op.inputs[0].type)
    cin_g, m_g = int(w.shape[1]), shape[1] // group
    rc = te.reduce_axis((0, cin_g), name="rc")
    rk = [te.reduce_axis((0, int(k)), name=f"rk{i}") for i, k in enumerate(w.shape[2:])]
    # padding holds the zero point: (padded - zx) contributes nothing, as real zero
    xp = pad_tensor(x, pads[:nsp], pads[nsp:], value=zx, name="qconv_pad")

    def acc(n, mo, *o):
        c = rc if group == 1 else (mo // m_g) * cin_g + rc
        sp = [o[i] * strides[i] + rk[i] * dil[i] for i in range(nsp)]
        return te.sum((xp(n, c, *sp).astype(I32) - const(zx, I32)) *
                      w(mo, rc, *rk).astype(I32), axis=[rc] + rk)
    s = te.compute(shape, acc, name="qconv_acc")

    def requant(n, mo, *o):
        r = tirx.nearbyint((s(n, mo, *o) + b(mo)).astype(F32) * m(mo))
        return _finish(r, op, dt)
    return [te.compute(shape, requant, name="qconv")]


@lowering("QMatMul")
def _qmatmul(op, ins, target):
    a, bw, c, m = ins
    shape, dt = out_type(op)
    za = _zp(op.inputs[0].type)
    k = te.reduce_axis((0, int(a.shape[-1])), name="k")
    s = te.compute(shape, lambda *i: te.sum((a(*i[:-1], k).astype(I32) - const(za, I32)) *
                                            bw(k, i[-1]).astype(I32), axis=k),
                   name="qmatmul_acc")

    def requant(*i):
        r = tirx.nearbyint((s(*i) + c(i[-1])).astype(F32) * m(i[-1]))
        return _finish(r, op, dt)
    return [te.compute(shape, requant, name="qmatmul")]


def _centered(t, tensor, idx):
    """float64(x - zero_point) at idx (exact)."""
    return (tensor(*idx).astype(I32) - const(_zp(t), I32)).astype(F64)


@lowering("QAdd", "QMul")
def _qbinary(op, ins, target):
    a, b = ins
    shape, dt = out_type(op)
    ta, tb = op.inputs[0].type, op.inputs[1].type
    s = float(op.attrs["scale"])
    sa, sb = ta.quant.scale[0], tb.quant.scale[0]
    if op.kind == "QAdd":
        ma = float(ratio(sa, s))
        mb = float(ratio(sb, s)) * int(op.attrs["b_sign"])
    else:
        mab = float(ratio(float(sa) * float(sb), s))

    def body(*i):
        ca, cb = _centered(ta, a, bcast_index(a, i)), _centered(tb, b, bcast_index(b, i))
        if op.kind == "QAdd":
            r = ca * const(ma, F64) + cb * const(mb, F64)   # exact products: FMA-proof
        else:
            r = (ca * cb) * const(mab, F64)
        return _finish(tirx.nearbyint(r), op, dt, F64)
    return [te.compute(shape, body, name=op.kind.lower())]


@lowering("QLookup")
def _qlookup(op, ins, target):
    x, table = ins
    shape, _ = out_type(op)
    lo = qrange(op.inputs[0].type.dtype)[0]
    if len(table.shape) == 1:
        return [te.compute(shape, lambda *i: table(x(*i).astype(I32) - const(lo, I32)),
                           name="qlookup")]
    return [te.compute(shape, lambda *i: table(i[1], x(*i).astype(I32) - const(lo, I32)),
                       name="qlookup")]


def _average(op, total, count, dt):
    """clamp(rint(float64(sum) * M / count) + z), M = float32(sX / s)."""
    m = float(ratio(op.inputs[0].type.quant.scale[0], float(op.attrs["scale"])))
    cnt = const(float(count), F64) if isinstance(count, int) else count.astype(F64)
    r = tirx.nearbyint(total.astype(F64) * const(m, F64) / cnt)
    return _finish(r, op, dt, F64)


@lowering("QGlobalAveragePool")
def _qgap(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    zx = _zp(op.inputs[0].type)
    sp = [int(d) for d in x.shape[2:]]
    rk = [te.reduce_axis((0, d), name=f"r{i}") for i, d in enumerate(sp)]
    s = te.compute(shape, lambda n, c, *_: te.sum(x(n, c, *rk).astype(I32) - const(zx, I32),
                                                  axis=rk), name="qgap_sum")
    count = 1
    for d in sp:
        count *= d
    return [te.compute(shape, lambda *i: _average(op, s(*i), count, dt), name="qgap")]


@lowering("QAveragePool")
def _qavgpool(op, ins, target):
    x = ins[0]
    shape, dt = out_type(op)
    zx = _zp(op.inputs[0].type)
    rk, positions = pool_windows(op, x, shape)
    nsp = len(rk)
    isz = [int(d) for d in x.shape[2:2 + nsp]]

    def total(n, c, *o):
        src, ok = positions(o)
        v = x(n, c, *src).astype(I32) - const(zx, I32)
        return te.sum(tirx.if_then_else(ok, v, const(0, I32)), axis=rk)
    s = te.compute(shape, total, name="qavgpool_sum")
    return [te.compute(shape, lambda n, c, *o: _average(op, s(n, c, *o),
                                                        window_count(op, o, isz), dt),
                       name="qavgpool")]
