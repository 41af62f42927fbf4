"""Transcendentals as plain arithmetic the vectorizer keeps in vector registers (exp, tanh).

LLVM lowers TIR's exp on float32 vectors to one scalar libm call per lane (16 `expf` calls per
AVX-512 vector in a conv + SiLU epilogue). Sigmoid, Tanh, Exp, Softplus, Mish, Elu, Selu,
Gelu (tanh form), Softmax, LogSumExp and the LSTM gates use these. Inlined, the formulas repeat
their operand ~30 times (TVM's simplifier substitutes the let-bound values), so a fused kernel
computes an operand into a buffer of its own where inlining would grow the expression too much
(lower.py: EXPRESSION_LIMIT; chains of transcendentals are a regression test).
`exp` here is Cody-Waite range reduction
(x = n·ln2 + r, |r| <= ln2/2, ln2 split in a part exact in float32 and a remainder), a
degree-6 polynomial for e^r (the Cephes expf coefficients) and 2^n built in the exponent bits.

Accuracy (float32, checked against numpy over every 997th float32 bit pattern and the edges in
tests/test_vector_math.py): error < 1.05 ulp of the exact value (1.011 measured) for x in [-87.33, 88.72]; exp(x) = +inf
above 88.7228, 0 below -87.3365 (where the true value is subnormal, < 1.2e-38: flushed);
exp(+inf) = inf, exp(-inf) = 0, exp(NaN) = NaN.

`tanh`: for |x| < 0.625 the odd polynomial x + x³·P(x²) (Cephes tanhf), else
sign(x)·(1 - 2 / (e^(2|x|) + 1)) with the exp above; ±1 beyond |x| = 9.1 (where float32 tanh is
±1), NaN → NaN; error < 1.3 ulp (1.25 measured; tests/test_vector_math.py).
"""
from __future__ import annotations

from tvm import tirx

from edgecc.backends.tvm.te_rules import etype

LOG2E = 1.44269504088896341
LN2_HI = 0.693359375                # exact in float32 with trailing zeros: n * LN2_HI exact
LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
            1.6666665459e-1, 5.0000001201e-1)
EXP_MAX = 88.72283905206835         # above: +inf
EXP_MIN = -87.33654475055310        # below: 0 (the result would be subnormal)


def _c(x, v):
    return tirx.const(v, etype(x))


def _let(value, body_of, name: str):
    """body_of(v) with v bound to `value` once: the formulas read their operand many times,
    and an expression tree repeats it at every use (nested exp/tanh grew exponentially)."""
    v = tirx.Var(name, etype(value))
    return tirx.Let(v, value, body_of(v))


def exp(x):
    """e^x: the vectorizable form for float32, TIR's exp for other float types."""
    if etype(x) != "float32":
        return tirx.exp(x)
    return _let(x, _exp, "exp_x")


def _exp(x):
    def reduced(xc):
        return _let(tirx.floor(xc * _c(x, LOG2E) + _c(x, 0.5)), lambda n: _let(
            xc - n * _c(x, LN2_HI) - n * _c(x, LN2_LO), lambda r: _scaled(x, n, r), "exp_r"),
            "exp_n")
    y = _let(tirx.max(tirx.min(x, _c(x, EXP_MAX)), _c(x, EXP_MIN)), reduced, "exp_xc")
    y = tirx.Select(x > _c(x, EXP_MAX), _c(x, float("inf")), y)
    y = tirx.Select(x < _c(x, EXP_MIN), _c(x, 0.0), y)
    return tirx.Select(tirx.isnan(x), x, y)       # NaN stays NaN


def _scaled(x, n, r):
    """e^r · 2^n; 2^n as 2^h · 2^(n-h), h = floor(n/2): both within float32's normal
    exponents for the n of [EXP_MIN, EXP_MAX] (-126 .. 128)."""
    p = _c(x, EXP_POLY[0])
    for k in EXP_POLY[1:]:
        p = p * r + _c(x, k)
    p = p * r * r + r + _c(x, 1.0)
    ni = n.astype("int32")
    bias, shift = tirx.const(127, "int32"), tirx.const(23, "int32")
    return _let(ni >> tirx.const(1, "int32"), lambda h: p
                * tirx.reinterpret("float32", (h + bias) << shift)
                * tirx.reinterpret("float32", (ni - h + bias) << shift), "exp_h")


TANH_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
             -3.33332819422e-1)
TANH_SMALL = 0.625
TANH_ONE = 9.1                      # beyond: ±1 in float32


def tanh(x):
    """tanh(x): the vectorizable form for float32, TIR's tanh for other float types."""
    if etype(x) != "float32":
        return tirx.tanh(x)
    return _let(x, _tanh, "tanh_x")


def _tanh(x):
    def of_abs(a):
        def poly(z):
            p = _c(x, TANH_POLY[0])
            for k in TANH_POLY[1:]:
                p = p * z + _c(x, k)
            return a + a * z * p
        small = _let(a * a, poly, "tanh_z")
        large = _c(x, 1.0) - _c(x, 2.0) / (exp(a + a) + _c(x, 1.0))
        return tirx.Select(a < _c(x, TANH_SMALL), small, large)
    y = _let(tirx.min(tirx.abs(x), _c(x, TANH_ONE)), of_abs, "tanh_a")
    y = _let(y, lambda t: tirx.Select(x < _c(x, 0.0), -t, t), "tanh_t")
    return tirx.Select(tirx.isnan(x), x, y)
