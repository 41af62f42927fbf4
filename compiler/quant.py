"""The arithmetic of edgecc's int8 ops, in one place: the reference kernels, the TVM lowering,
the quantization pass and the importer all take their constants from here, so the compiled
code and the reference compute the same integers.

Affine quantization (ONNX): real = (q - zero_point) * scale. Quantizing rounds half to even
and saturates: q = clamp(rint(x / scale) + zero_point).

Integer ops requantize their int32 accumulator with a float32 multiplier M (one per output
channel for convolutions): q = clamp(rint(float32(acc) * M) + zero_point). One multiply and a
rounding, no add in floating point between them: compilers may fuse a multiply and an add
into an FMA (TVM does), which rounds differently from the two operations, so an expression of
that shape would not be bit-exact across backends. Where two rescaled terms are summed
(QAdd), both products are of a small integer and a float32 multiplier, which is exact in
float64: the sum rounds once whether or not it is fused.
"""
from __future__ import annotations

import numpy as np

from .ir import QuantParams

QRANGE = {"u8": (0, 255), "i8": (-128, 127)}
QDTYPES = tuple(QRANGE)


def qrange(dtype: str) -> tuple[int, int]:
    return QRANGE[dtype]


def per_axis(values, axis: int | None, rank: int, size: int) -> np.ndarray:
    """A per-tensor (1 value) or per-axis parameter, shaped to broadcast over a tensor."""
    a = np.asarray(values)
    if axis is None or a.size == 1:
        return a.reshape(())
    shape = [1] * rank
    shape[axis] = size
    return a.reshape(shape)


def quantize(x: np.ndarray, q: QuantParams, dtype: str) -> np.ndarray:
    """ONNX QuantizeLinear: rint(x / scale) + zero_point, saturated (computed in float32)."""
    x = np.asarray(x, np.float32)
    axis_len = x.shape[q.axis] if q.axis is not None else 1
    scale = per_axis(np.asarray(q.scale, np.float32), q.axis, x.ndim, axis_len)
    zp = per_axis(np.asarray(q.zero_point, np.int32), q.axis, x.ndim, axis_len)
    lo, hi = qrange(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.rint(x / scale)
    r = np.nan_to_num(r, nan=0.0, posinf=hi - 0.0, neginf=lo - 0.0)
    r = np.clip(r, lo - 2.0 ** 20, hi + 2.0 ** 20).astype(np.int64) + zp
    return np.clip(r, lo, hi).astype(np.dtype(_np(dtype)))


def dequantize(q_array: np.ndarray, q: QuantParams) -> np.ndarray:
    """ONNX DequantizeLinear: float32(q - zero_point) * scale."""
    a = np.asarray(q_array)
    axis_len = a.shape[q.axis] if q.axis is not None else 1
    scale = per_axis(np.asarray(q.scale, np.float32), q.axis, a.ndim, axis_len)
    zp = per_axis(np.asarray(q.zero_point, np.int32), q.axis, a.ndim, axis_len)
    return (a.astype(np.int32) - zp).astype(np.float32) * scale


def params_for_range(lo: float, hi: float, dtype: str) -> QuantParams:
    """Asymmetric per-tensor parameters covering [lo, hi] (widened to hold 0 exactly, so
    zero padding and ReLU's zero are exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    qlo, qhi = qrange(dtype)
    if hi - lo < 1e-12:
        return QuantParams((1.0,), (0 if dtype == "i8" else 0,), None)
    scale = float(np.float32((hi - lo) / (qhi - qlo)))
    zp = int(np.clip(round(qlo - lo / scale), qlo, qhi))
    return QuantParams((scale,), (zp,), None)


def symmetric_weight_params(w: np.ndarray, axis: int = 0, bits: int = 8) -> QuantParams:
    """Per-channel symmetric int8 parameters of weights (zero point 0, range ±(2^(bits-1)-1)):
    per channel, the clipping of |w|'s maximum (100% down to 60%) with the least squared
    rounding-plus-clipping error."""
    qmax = 2 ** (bits - 1) - 1
    wc = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    amax = np.max(np.abs(wc), axis=1) if wc.size else np.zeros(w.shape[axis])
    best, best_err = amax.copy(), np.full(len(amax), np.inf)
    for r in np.linspace(1.0, 0.6, 21):
        s = np.where(amax > 0, amax * r / qmax, 1.0)[:, None]
        err = np.sum((np.clip(np.rint(wc / s), -qmax, qmax) * s - wc) ** 2, axis=1)
        better = err < best_err
        best[better], best_err[better] = amax[better] * r, err[better]
    scale = np.where(best > 0, best / qmax, 1.0).astype(np.float32)
    return QuantParams(tuple(float(s) for s in scale), (0,) * len(scale), axis)


def quantize_weights(w: np.ndarray, q: QuantParams, bits: int = 8) -> np.ndarray:
    qmax = 2 ** (bits - 1) - 1
    out = quantize(w, q, "i8")
    return np.clip(out, -qmax, qmax).astype(np.int8)


def quantize_bias(b: np.ndarray | None, sx: float, sw: tuple[float, ...], n: int) -> np.ndarray:
    """int32 bias in the accumulator's scale sx * sw[c]."""
    if b is None:
        return np.zeros(n, np.int32)
    acc_scale = np.float64(sx) * np.asarray(sw, np.float64)
    r = np.rint(np.asarray(b, np.float64) / acc_scale)
    return np.clip(r, -2 ** 31, 2 ** 31 - 1).astype(np.int32)


def conv_multipliers(sx: float, sw, sy: float) -> np.ndarray:
    """float32 M[c] = sx * sw[c] / sy of a QConv / QMatMul output channel."""
    return (np.float64(sx) * np.asarray(sw, np.float64) / np.float64(sy)).astype(np.float32)


def ratio(s_in: float, s_out: float) -> np.float32:
    """float32 multiplier s_in / s_out (QAdd, QMul, the average pools)."""
    return np.float32(np.float64(s_in) / np.float64(s_out))


def requantize(acc: np.ndarray, mult: np.ndarray, zp: int, lo: int, hi: int) -> np.ndarray:
    """clamp(rint(float32(acc) * M) + zp): the epilogue of QConv / QMatMul (acc int32 or int64
    holding int32 values; M broadcast against it)."""
    r = np.rint(acc.astype(np.float32) * np.asarray(mult, np.float32))
    r = np.clip(r, -2.0 ** 30, 2.0 ** 30).astype(np.int64) + zp
    return np.clip(r, lo, hi)


def stored_value(value: float, t) -> float | int:
    """A constant (a Pad value) as stored in a tensor of type t: quantized when t is."""
    if t.quant is None:
        return value
    return int(quantize(np.float32(value), t.quant, t.dtype))


def _np(dtype: str) -> str:
    return {"u8": "uint8", "i8": "int8"}[dtype]


def lookup_table(fn, x_quant: QuantParams, x_dtype: str, y_quant: QuantParams,
                 y_dtype: str) -> list[int]:
    """The 256 outputs of y = quantize(fn(dequantize(x))) for every x of its dtype, fn applied
    in float32 (as the float op would)."""
    lo, hi = qrange(x_dtype)
    xs = np.arange(lo, hi + 1).astype(_np(x_dtype))
    real = dequantize(xs, x_quant)
    ys = np.asarray(fn(real), np.float32)
    return [int(v) for v in quantize(ys, y_quant, y_dtype)]
