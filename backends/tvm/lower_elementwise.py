"""TE lowerings of the elementwise ops (unary, binary/variadic with numpy broadcasting, Where,
PRelu, Clip, Cast) and of the view ops' index remappings (used inside Fused bodies)."""
from __future__ import annotations

import math

import numpy as np
from tvm import te, tirx

from edgecc.backends.tvm import vector_math
from edgecc.backends.tvm.te_rules import (broadcast_compute, const, etype,
                                          is_float_dtype, lowering, out_type)


# ---- unary -----------------------------------------------------------------------------------

def _unary(kind, fn):
    @lowering(kind)
    def rule(op, ins, target):
        x = ins[0]
        return [te.compute(x.shape, lambda *i: fn(x(*i), op, x.dtype), name=kind.lower())]
    return rule


# How many times a rule repeats its operand's expression once inlined (default 1): TVM's
# simplifier substitutes let-bound values, so the polynomial exp/tanh (vector_math) repeat
# theirs ~30 times, Mish nests tanh over exp, others read the operand two or three times.
# lower.py computes an operand once into a buffer where inlining would grow too much.
EXPANSION = {"Sigmoid": 30, "Tanh": 30, "Exp": 30, "Softplus": 30, "Elu": 30, "Selu": 30,
             "Softmax": 30, "LogSoftmax": 30, "Gelu": 120, "Mish": 1000, "Softsign": 3,
             "HardSwish": 3, "LeakyRelu": 3, "Sign": 3, "PRelu": 3, "Pow": 3, "Mod": 3}


def _c(x, v):
    return const(v, etype(x))


_UNARY = {
    "Relu": lambda x, op, dt: tirx.max(x, _c(x, 0)),
    "Sigmoid": lambda x, op, dt: _c(x, 1) / (_c(x, 1) + vector_math.exp(-x)),
    "Tanh": lambda x, op, dt: vector_math.tanh(x),
    "Erf": lambda x, op, dt: tirx.erf(x),
    "Sqrt": lambda x, op, dt: tirx.sqrt(x),
    "Exp": lambda x, op, dt: vector_math.exp(x),
    "Log": lambda x, op, dt: tirx.log(x),
    "Neg": lambda x, op, dt: -x,
    "Abs": lambda x, op, dt: tirx.abs(x),
    "Reciprocal": lambda x, op, dt: _c(x, 1) / x,
    "Floor": lambda x, op, dt: tirx.floor(x),
    "Ceil": lambda x, op, dt: tirx.ceil(x),
    "Round": lambda x, op, dt: tirx.nearbyint(x),          # half to even, as ONNX
    "Sign": lambda x, op, dt: tirx.Select(x > _c(x, 0), _c(x, 1),
                                          tirx.Select(x < _c(x, 0), _c(x, -1), _c(x, 0))),
    "Sin": lambda x, op, dt: tirx.sin(x),
    "Cos": lambda x, op, dt: tirx.cos(x),
    # log(1+e^x) without overflow: max(x,0) + log1p(e^-|x|)
    "Softplus": lambda x, op, dt: tirx.max(x, _c(x, 0)) + tirx.log1p(vector_math.exp(-tirx.abs(x))),
    "Softsign": lambda x, op, dt: x / (_c(x, 1) + tirx.abs(x)),
    # x * tanh(softplus(x)), softplus as above
    "Mish": lambda x, op, dt: x * vector_math.tanh(tirx.max(x, _c(x, 0))
                                           + tirx.log1p(vector_math.exp(-tirx.abs(x)))),
    "HardSwish": lambda x, op, dt: x * tirx.max(_c(x, 0), tirx.min(_c(x, 1),
                                                                   x / _c(x, 6) + _c(x, 0.5))),
    "Not": lambda x, op, dt: tirx.Not(x),
    "LeakyRelu": lambda x, op, dt: tirx.Select(x < _c(x, 0), x * _c(x, op.attrs["alpha"]), x),
    "Elu": lambda x, op, dt: tirx.Select(x < _c(x, 0),
                                         _c(x, op.attrs["alpha"]) * (vector_math.exp(x) - _c(x, 1)), x),
    "Selu": lambda x, op, dt: _c(x, op.attrs["gamma"]) * tirx.Select(
        x <= _c(x, 0), _c(x, op.attrs["alpha"]) * (vector_math.exp(x) - _c(x, 1)), x),
    "HardSigmoid": lambda x, op, dt: tirx.max(_c(x, 0), tirx.min(
        _c(x, 1), _c(x, op.attrs["alpha"]) * x + _c(x, op.attrs["beta"]))),
}
for _kind, _fn in _UNARY.items():
    _unary(_kind, _fn)


@lowering("Gelu")
def _gelu(op, ins, target):
    x = ins[0]
    if op.attrs["approximate"] == "tanh":
        k = math.sqrt(2.0 / math.pi)

        def f(v):
            return _c(v, 0.5) * v * (_c(v, 1) + vector_math.tanh(_c(v, k) * (v + _c(v, 0.044715) * v * v * v)))
    else:
        def f(v):
            return _c(v, 0.5) * v * (_c(v, 1) + tirx.erf(v * _c(v, 1 / math.sqrt(2.0))))
    return [te.compute(x.shape, lambda *i: f(x(*i)), name="gelu")]


@lowering("Clip")
def _clip(op, ins, target):
    x = ins[0]
    lo, hi = float(op.attrs["min"]), float(op.attrs["max"])
    integer = not is_float_dtype(x.dtype)

    def f(v):   # max first, then min: when min > max every value becomes max (ONNX)
        if lo != -math.inf:
            v = tirx.max(v, const(int(lo) if integer else lo, x.dtype))
        if hi != math.inf:
            v = tirx.min(v, const(int(hi) if integer else hi, x.dtype))
        return v
    return [te.compute(x.shape, lambda *i: f(x(*i)), name="clip")]


@lowering("Cast")
def _cast(op, ins, target):
    x = ins[0]
    _, dt = out_type(op)
    if op.attrs["to"] == "f16" and dt == "float32":     # f16 computed in f32: still round
        return [te.compute(x.shape, lambda *i: x(*i).astype("float16").astype(dt), name="cast")]
    if dt == "bool":
        return [te.compute(x.shape, lambda *i: x(*i) != const(0, x.dtype), name="cast")]
    if x.dtype == "bool":
        return [te.compute(x.shape, lambda *i: tirx.Select(x(*i), const(1, dt), const(0, dt)),
                           name="cast")]
    return [te.compute(x.shape, lambda *i: x(*i).astype(dt), name="cast")]


# ---- binary / variadic -----------------------------------------------------------------------

def _div(a, b):
    if is_float_dtype(etype(a)):
        return a / b
    return tirx.truncdiv(a, b)                                # C semantics, as ONNX


def _mod(op):
    fmod = op.attrs.get("fmod", 0)

    def f(a, b):
        if is_float_dtype(etype(a)):
            r = a - tirx.trunc(a / b) * b                     # C fmod (no llvm intrinsic)
            if fmod:
                return r
            # numpy mod: the result takes the sign of the divisor
            return tirx.Select(tirx.all(r != _c(r, 0), (r < _c(r, 0)) != (b < _c(b, 0))),
                               r + b, r)
        return tirx.truncmod(a, b) if fmod else tirx.floormod(a, b)
    return f


def _pow(a, b):
    if is_float_dtype(etype(a)):
        return tirx.power(a, b.astype(etype(a)))
    return tirx.power(a.astype("float64"), b.astype("float64")).astype(etype(a))


_BINARY = {
    "Add": lambda op: lambda a, b: a + b,
    "Sub": lambda op: lambda a, b: a - b,
    "Mul": lambda op: lambda a, b: a * b,
    "Div": lambda op: _div,
    "Pow": lambda op: _pow,
    "Mod": _mod,
    "Equal": lambda op: lambda a, b: a == b,
    "Less": lambda op: lambda a, b: a < b,
    "Greater": lambda op: lambda a, b: a > b,
    "LessOrEqual": lambda op: lambda a, b: a <= b,
    "GreaterOrEqual": lambda op: lambda a, b: a >= b,
    "And": lambda op: lambda a, b: tirx.And(a, b),
    "Or": lambda op: lambda a, b: tirx.Or(a, b),
    # (a != b on i1 hits a TVM codegen bug: fcmp on booleans)
    "Xor": lambda op: lambda a, b: tirx.Or(tirx.And(a, tirx.Not(b)), tirx.And(tirx.Not(a), b)),
    "PRelu": lambda op: lambda x, s: tirx.Select(x < _c(x, 0), x * s, x),
}


def _binary(kind, make):
    @lowering(kind)
    def rule(op, ins, target):
        return [broadcast_compute(op, ins[:2], make(op))]
    return rule


for _kind, _make in _BINARY.items():
    _binary(_kind, _make)


def _variadic(kind, combine, finish=None):
    @lowering(kind)
    def rule(op, ins, target):
        xs = [t for t in ins if t is not None]

        def f(*vals):
            acc = vals[0]
            for v in vals[1:]:
                acc = combine(acc, v)
            return finish(acc, len(vals)) if finish else acc
        return [broadcast_compute(op, xs, f)]
    return rule


_variadic("Max", tirx.max)
_variadic("Min", tirx.min)
_variadic("Sum", lambda a, b: a + b)
_variadic("Mean", lambda a, b: a + b, lambda acc, n: acc / const(n, etype(acc)))


@lowering("Where")
def _where(op, ins, target):
    return [broadcast_compute(op, ins[:3], lambda c, x, y: tirx.Select(c, x, y))]


# ---- views (index remapping; only materialized inside Fused bodies) --------------------------

@lowering("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(op, ins, target):
    x = ins[0]
    shape, _ = out_type(op)
    in_shape = [int(d) for d in x.shape]
    in_strides = _strides(in_shape)
    out_strides = _strides(shape)

    def body(*idx):
        flat = 0
        for i, s in zip(idx, out_strides):
            flat = flat + i * s
        src = [tirx.floormod(tirx.floordiv(flat, s), d) if d != 1 else 0
               for s, d in zip(in_strides, in_shape)]
        return x(*src)
    return [te.compute(shape, body, name=op.kind.lower())]


def _strides(shape):
    return [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]


@lowering("Identity", "Dropout")
def _identity(op, ins, target):
    x = ins[0]
    return [te.compute(x.shape, lambda *i: x(*i), name="identity")]
