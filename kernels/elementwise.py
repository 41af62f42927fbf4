"""Elementwise ops: unary math, binary/variadic arithmetic with numpy broadcasting,
comparisons, logic, Where, Clip, Cast.

Float math runs in Numba loops computing in float64 and storing the result type (f16 is
computed through f32). Integer and bool ops use numpy with the exact ONNX semantics
(integer Div truncates toward zero; Mod follows the divisor's sign unless fmod=1): the
importer folds int64 shape arithmetic through these kernels.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgecc.dtypes import dtype_to_numpy

from .registry import contiguous, kernel

# ---- unary float math ------------------------------------------------------------------
(RELU, SIGMOID, TANH, ERF, SQRT, EXP, LOG, NEG, ABS, RECIP, FLOOR, CEIL, ROUND, SIGN, SIN,
 COS, SOFTPLUS, SOFTSIGN, HARDSWISH, LEAKY, ELU, SELU, HARDSIGMOID, CLIP, GELU,
 GELU_TANH, MISH) = range(27)


@njit(cache=True, error_model="numpy")
def _unary(x, out, code, a, b):
    for i in range(x.size):
        v = np.float64(x[i])
        if code == RELU:
            r = 0.0 if v < 0.0 else v
        elif code == SIGMOID:
            if v >= 0.0:
                r = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                r = e / (1.0 + e)
        elif code == TANH:
            r = math.tanh(v)
        elif code == ERF:
            r = math.erf(v)
        elif code == SQRT:
            r = math.sqrt(v) if v >= 0.0 else np.nan
        elif code == EXP:
            r = math.exp(v)
        elif code == LOG:
            r = math.log(v) if v > 0.0 else (-np.inf if v == 0.0 else np.nan)
        elif code == NEG:
            r = -v
        elif code == ABS:
            r = abs(v)
        elif code == RECIP:
            r = 1.0 / v if v != 0.0 else math.copysign(np.inf, v)
        elif code == FLOOR:
            r = math.floor(v) if math.isfinite(v) else v
        elif code == CEIL:
            r = math.ceil(v) if math.isfinite(v) else v
        elif code == ROUND:
            r = np.rint(v)  # half to even
        elif code == SIGN:
            r = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else v)
        elif code == SIN:
            r = math.sin(v)
        elif code == COS:
            r = math.cos(v)
        elif code == SOFTPLUS:  # log(1 + e^v), stable for large |v|
            r = max(v, 0.0) + math.log1p(math.exp(-abs(v)))
        elif code == SOFTSIGN:
            r = v / (1.0 + abs(v))
        elif code == HARDSWISH:
            r = v * min(max(v / 6.0 + 0.5, 0.0), 1.0)
        elif code == LEAKY:
            r = v if v >= 0.0 else a * v
        elif code == ELU:
            r = v if v >= 0.0 else a * (math.exp(v) - 1.0)
        elif code == SELU:
            r = b * v if v > 0.0 else b * a * (math.exp(v) - 1.0)
        elif code == HARDSIGMOID:
            r = max(0.0, min(1.0, a * v + b))
        elif code == CLIP:
            r = v
            if r < a:
                r = a
            if r > b:
                r = b
        elif code == GELU:
            r = 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
        elif code == MISH:      # v * tanh(softplus(v))
            r = v * math.tanh(max(v, 0.0) + math.log1p(math.exp(-abs(v))))
        else:  # GELU_TANH
            r = 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))
        out[i] = r


def float_unary(x: np.ndarray, code: int, a: float = 0.0, b: float = 0.0) -> np.ndarray:
    """Apply unary float op `code` to x (f16/f32/f64), returning x's dtype."""
    if x.dtype.kind != "f":
        raise TypeError(f"expects a float tensor, got {x.dtype}")
    work = contiguous(x, dtype=np.float32 if x.dtype == np.float16 else x.dtype)
    out = np.empty_like(work)
    _unary(work.reshape(-1), out.reshape(-1), code, float(a), float(b))
    return out.astype(x.dtype, copy=False)


_FLOAT_ONLY = {"Sigmoid": SIGMOID, "Tanh": TANH, "Erf": ERF, "Sqrt": SQRT, "Exp": EXP,
               "Log": LOG, "Reciprocal": RECIP, "Floor": FLOOR, "Ceil": CEIL, "Round": ROUND,
               "Sin": SIN, "Cos": COS, "Softplus": SOFTPLUS, "Softsign": SOFTSIGN,
               "HardSwish": HARDSWISH, "Mish": MISH}
# ops that are also defined on integers: float code, exact integer numpy function
_ANY_TYPE = {"Relu": (RELU, lambda x: np.maximum(x, 0).astype(x.dtype)),
             "Neg": (NEG, np.negative), "Abs": (ABS, np.abs), "Sign": (SIGN, np.sign)}


def _register_unary():
    for kind, code in _FLOAT_ONLY.items():
        kernel(kind)(lambda op, ins, code=code: [float_unary(ins[0], code)])
    for kind, (code, int_fn) in _ANY_TYPE.items():
        def run(op, ins, code=code, int_fn=int_fn):
            x = ins[0]
            return [float_unary(x, code) if x.dtype.kind == "f" else int_fn(x)]
        kernel(kind)(run)


_register_unary()


@kernel("LeakyRelu")
def _leaky_relu(op, ins):
    return [float_unary(ins[0], LEAKY, op.attrs["alpha"])]


@kernel("Elu")
def _elu(op, ins):
    return [float_unary(ins[0], ELU, op.attrs["alpha"])]


@kernel("Selu")
def _selu(op, ins):
    return [float_unary(ins[0], SELU, op.attrs["alpha"], op.attrs["gamma"])]


@kernel("HardSigmoid")
def _hard_sigmoid(op, ins):
    return [float_unary(ins[0], HARDSIGMOID, op.attrs["alpha"], op.attrs["beta"])]


@kernel("Gelu")
def _gelu(op, ins):
    approximate = op.attrs["approximate"]
    if approximate not in ("none", "tanh"):
        raise ValueError(f"unknown approximate='{approximate}' (expected none or tanh)")
    return [float_unary(ins[0], GELU if approximate == "none" else GELU_TANH)]


@kernel("Clip")
def _clip(op, ins):
    x = ins[0]
    lo, hi = float(op.attrs["min"]), float(op.attrs["max"])
    if x.dtype.kind == "f":
        return [float_unary(x, CLIP, lo, hi)]
    info = np.iinfo(x.dtype)
    lo = info.min if lo == -math.inf else int(lo)
    hi = info.max if hi == math.inf else int(hi)
    return [np.minimum(np.maximum(x, x.dtype.type(max(lo, info.min))),
                       x.dtype.type(min(hi, info.max)))]


@kernel("Identity", "Dropout")
def _identity(op, ins):
    return [ins[0]]


@kernel("Not")
def _not(op, ins):
    return [np.logical_not(ins[0])]


@kernel("Cast")
def _cast(op, ins):
    # numpy's astype is ONNX's Cast: float→int truncates, x→bool is x != 0, ints wrap
    with np.errstate(invalid="ignore", over="ignore"):
        return [ins[0].astype(dtype_to_numpy(op.attrs["to"]))]


# ---- binary arithmetic ------------------------------------------------------------------
ADD, SUB, MUL, DIV, POW, MAX, MIN, PRELU = range(8)


@njit(cache=True, error_model="numpy")  # x/0 is inf/nan, as IEEE
def _binary(x, y, out, code):
    for i in range(out.size):
        a = np.float64(x[i])
        b = np.float64(y[i])
        if code == ADD:
            r = a + b
        elif code == SUB:
            r = a - b
        elif code == MUL:
            r = a * b
        elif code == DIV:
            r = a / b
        elif code == POW:
            r = a ** b if not (a < 0.0 and b != math.floor(b)) else np.nan
        elif code == MAX:
            r = a if (a >= b or a != a) else b
        elif code == MIN:
            r = a if (a <= b or a != a) else b
        else:  # PRELU: y is the slope
            r = a if a >= 0.0 else a * b
        out[i] = r


def _broadcast(arrays: list[np.ndarray]) -> list[np.ndarray]:
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [np.broadcast_to(a, shape) for a in arrays]


def float_binary(x: np.ndarray, y: np.ndarray, code: int) -> np.ndarray:
    dtype = x.dtype
    work = np.float32 if dtype == np.float16 else dtype
    x, y = _broadcast([x, y])
    xs = contiguous(x, dtype=work).reshape(-1)
    ys = contiguous(y, dtype=work).reshape(-1)
    out = np.empty(x.shape, dtype=work)
    _binary(xs, ys, out.reshape(-1), code)
    return out.astype(dtype, copy=False)


def _int_div(a, b):
    """Integer division truncating toward zero (C semantics); x/0 gives 0."""
    a, b = _broadcast([a, b])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.floor_divide(a, b)
        fix = (q < 0) & (q * b != a) if a.dtype.kind == "i" else False
    return (q + fix).astype(a.dtype)


def _int_pow(a, b):
    if b.dtype.kind == "f":  # integer base, float exponent: ONNX computes in float
        return np.power(a.astype(np.float64), b).astype(a.dtype)
    if np.any(b < 0):
        raise ValueError("integer Pow with a negative exponent")
    return np.power(a, b.astype(a.dtype)).astype(a.dtype)


_INT_BINARY = {ADD: np.add, SUB: np.subtract, MUL: np.multiply, DIV: _int_div, POW: _int_pow,
               MAX: np.maximum, MIN: np.minimum,
               PRELU: lambda x, s: np.where(x >= 0, x, x * s).astype(x.dtype)}


def binary(x: np.ndarray, y: np.ndarray, code: int) -> np.ndarray:
    if x.dtype.kind == "f":
        if y.dtype != x.dtype:
            y = y.astype(x.dtype)  # Pow's exponent may have another type
        return float_binary(x, y, code)
    if x.dtype.kind == "b":
        raise TypeError("arithmetic on a bool tensor")
    with np.errstate(over="ignore"):
        return np.asarray(_INT_BINARY[code](x, y)).astype(x.dtype, copy=False)


for _kind, _code in {"Add": ADD, "Sub": SUB, "Mul": MUL, "Div": DIV, "Pow": POW,
                     "PRelu": PRELU}.items():
    kernel(_kind)(lambda op, ins, code=_code: [binary(ins[0], ins[1], code)])


@kernel("Max", "Min")
def _max_min(op, ins):
    code = MAX if op.kind == "Max" else MIN
    acc = ins[0]
    for x in ins[1:]:
        acc = binary(acc, x, code)
    return [np.broadcast_to(acc, np.broadcast_shapes(*(x.shape for x in ins))).copy()]


@kernel("Sum", "Mean")
def _sum_mean(op, ins):
    dtype = ins[0].dtype
    shape = np.broadcast_shapes(*(x.shape for x in ins))
    if dtype.kind != "f":
        acc = np.zeros(shape, dtype)
        for x in ins:
            acc = acc + x
        return [_int_div(acc, np.array(len(ins), dtype)) if op.kind == "Mean" else acc]
    acc = np.zeros(shape, np.float64)  # accumulate in float64, store the input type
    for x in ins:
        acc = float_binary(acc, x.astype(np.float64), ADD)
    if op.kind == "Mean":
        acc = acc / len(ins)
    return [acc.astype(dtype)]


@kernel("Mod")
def _mod(op, ins):
    a, b = ins
    fmod = op.attrs.get("fmod", 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.fmod(a, b) if fmod else np.mod(a, b)
    return [np.asarray(r).astype(a.dtype, copy=False)]


# ---- comparisons, logic, selection ------------------------------------------------------
_COMPARE = {"Equal": np.equal, "Less": np.less, "Greater": np.greater,
            "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
            "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}


def _register_compare():
    for kind, fn in _COMPARE.items():
        kernel(kind)(lambda op, ins, fn=fn: [np.asarray(fn(ins[0], ins[1]))])


_register_compare()


@kernel("Where")
def _where(op, ins):
    c, x, y = ins
    return [np.where(c, x, y).astype(x.dtype, copy=False)]
