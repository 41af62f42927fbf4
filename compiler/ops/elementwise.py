"""Elementwise ops: unary (same type out), binary/variadic with numpy broadcasting, Where, PRelu."""
from __future__ import annotations

import math

from ..dtypes import DTYPES, FLOAT_DTYPES as FLOATS
from ..ir import TensorType
from ..opdef import REQUIRED, OpRuleError, opdef
from ._util import (INT_DTYPES, NUMERIC_DTYPES, SIGNED_DTYPES, attr_choice, attr_float,
                    attr_int, broadcast_shapes, need_dtype, need_float, need_numeric,
                    same_dtype, unidirectional)


# ---- unary ----------------------------------------------------------------------------------

# op kind -> (allowed element types, description used in errors)
_UNARY = {
    **{k: (FLOATS, "float") for k in (
        "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round",
        "Sin", "Cos", "Softplus", "Softsign", "HardSwish", "Mish")},
    "Relu": (SIGNED_DTYPES, "float or signed int"),
    "Neg": (SIGNED_DTYPES, "float or signed int"),
    "Abs": (NUMERIC_DTYPES, "numeric (not bool)"),
    "Sign": (NUMERIC_DTYPES, "numeric (not bool)"),
    "Not": (("bool",), "bool"),
    "Identity": (DTYPES, "any type"),
    "Dropout": (DTYPES, "any type"),
}

# float unary ops with attributes
_UNARY_ATTRS = {
    "LeakyRelu": {"alpha": 0.01},
    "Elu": {"alpha": 1.0},
    "Selu": {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
}


def _unary(kind, allowed, desc):
    def infer(op):
        x = op.inputs[0].type
        need_dtype(kind, "X", x, allowed, desc)
        for name in op.attrs:
            attr_float(op, name)
        return [x]
    infer.__doc__ = f"{kind}(X): elementwise, result has X's type" + _UNARY_NOTES.get(kind, ".")
    return infer


_UNARY_NOTES = {
    "Identity": " (the operand itself: a view, no kernel).",
    "Dropout": " (inference: the identity; one output, a view).",
    "Round": "; halves to even, as ONNX.",
}


ELEMENTWISE = ("elementwise", "inplace_ok")
# Identity and Dropout (inference) return their operand: views, no kernel
_VIEW = ("view", "identity", "movement", "quant_transparent")


def _always(op) -> bool:
    return True


for _kind, (_allowed, _desc) in _UNARY.items():
    _view = _kind in ("Identity", "Dropout")
    opdef(_kind, ["X"], traits=_VIEW if _view else ELEMENTWISE, noop=_always if _view else None,
          onnx=None if _kind == "Dropout" else "same")(_unary(_kind, _allowed, _desc))
for _kind, _attrs in _UNARY_ATTRS.items():
    opdef(_kind, ["X"], _attrs, traits=ELEMENTWISE, onnx="same")(
        _unary(_kind, FLOATS, "float"))


@opdef("Gelu", ["X"], {"approximate": "none"}, traits=ELEMENTWISE, onnx="same")
def _gelu(op):
    """Gelu(X), approximate "none" (erf) or "tanh"."""
    need_float("Gelu", "X", op.inputs[0].type)
    attr_choice(op, "approximate", ("none", "tanh"))
    return [op.inputs[0].type]


@opdef("Clip", ["X"], {"min": -math.inf, "max": math.inf}, traits=ELEMENTWISE)
def _clip(op):
    """Clip(X) to [min, max]; for integer X the bounds must be exact integers (or ±inf)."""
    x = op.inputs[0].type
    need_numeric("Clip", "X", x)
    lo, hi = attr_float(op, "min"), attr_float(op, "max")
    if math.isnan(lo) or math.isnan(hi):
        raise OpRuleError(f"Clip: bounds must not be NaN, got min={lo} max={hi}")
    if x.dtype in INT_DTYPES:
        for name, b in (("min", lo), ("max", hi)):
            if not math.isinf(b) and b != int(b):
                raise OpRuleError(f"Clip: {name}={b} is not an integer but X is {x.dtype}")
    return [x]


@opdef("Cast", ["X"], {"to": REQUIRED}, traits=ELEMENTWISE)
def _cast(op):
    """Cast(X) to element type `to` (a short dtype name like "f32")."""
    to = op.attrs["to"]
    if to not in DTYPES:
        raise OpRuleError(f"Cast: to={to!r} is not an element type; one of {list(DTYPES)}")
    return [TensorType(to, op.inputs[0].type.shape)]


# ---- binary / variadic with broadcasting ----------------------------------------------------

def _binary(kind, allowed, desc, out_dtype=None):
    def infer(op):
        types = [v.type for v in op.inputs]
        if not types:
            raise OpRuleError(f"{kind} needs at least one operand")
        for i, t in enumerate(types):
            need_dtype(kind, f"operand {i}", t, allowed, desc)
        dtype = same_dtype(kind, types)
        return [TensorType(out_dtype or dtype, broadcast_shapes(*(t.shape for t in types), kind=kind))]
    infer.__doc__ = f"{kind}: elementwise with numpy broadcasting" + _BINARY_NOTES.get(kind, ".")
    return infer


_BINARY_NOTES = {
    "Div": "; integer Div truncates toward zero (as C).",
    "Max": "; variadic.", "Min": "; variadic.", "Sum": "; variadic.", "Mean": "; variadic.",
    "Equal": " -> bool.", "Less": " -> bool.", "Greater": " -> bool.",
    "LessOrEqual": " -> bool.", "GreaterOrEqual": " -> bool.",
    "And": " (bool).", "Or": " (bool).", "Xor": " (bool).",
}


_NUM = (NUMERIC_DTYPES, "numeric (not bool)")
_SAME = {"traits": ELEMENTWISE, "onnx": "same"}
for _kind in ("Add", "Sub", "Mul", "Div"):
    opdef(_kind, ["A", "B"], **_SAME)(_binary(_kind, *_NUM))
for _kind in ("Max", "Min"):
    opdef(_kind, ["inputs*"], **_SAME)(_binary(_kind, *_NUM))
for _kind in ("Sum", "Mean"):
    opdef(_kind, ["inputs*"], **_SAME)(_binary(_kind, FLOATS, "float"))
opdef("Equal", ["A", "B"], **_SAME)(_binary("Equal", DTYPES, "any type", out_dtype="bool"))
for _kind in ("Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
    opdef(_kind, ["A", "B"], **_SAME)(_binary(_kind, *_NUM, out_dtype="bool"))
for _kind in ("And", "Or", "Xor"):
    opdef(_kind, ["A", "B"], **_SAME)(_binary(_kind, ("bool",), "bool"))


@opdef("Pow", ["X", "Y"], **_SAME)
def _pow(op):
    """Pow(X, Y): X**Y broadcast; the exponent may have another numeric type, result is X's."""
    x, y = op.inputs[0].type, op.inputs[1].type
    need_numeric("Pow", "X", x)
    need_numeric("Pow", "Y", y)
    return [TensorType(x.dtype, broadcast_shapes(x.shape, y.shape, kind="Pow"))]


@opdef("Mod", ["A", "B"], {"fmod": 0}, **_SAME)
def _mod(op):
    """Mod(A, B): fmod=0 is Python-style (sign of divisor, integers only), fmod=1 is C fmod."""
    a, b = op.inputs[0].type, op.inputs[1].type
    fmod_ = attr_int(op, "fmod", 0, 1)
    need_numeric("Mod", "A", a)
    dtype = same_dtype("Mod", [a, b])
    if dtype in FLOATS and fmod_ == 0:
        raise OpRuleError(f"Mod: fmod=0 is defined for integers only; {dtype} needs fmod=1")
    return [TensorType(dtype, broadcast_shapes(a.shape, b.shape, kind="Mod"))]


@opdef("Where", ["C", "X", "Y"], **_SAME)
def _where(op):
    """Where(C, X, Y): C ? X : Y with three-way broadcasting; C is bool."""
    c, x, y = (v.type for v in op.inputs)
    if c.dtype != "bool":
        raise OpRuleError(f"Where: condition C must be bool, got {c.dtype}")
    dtype = same_dtype("Where", [x, y], ["X", "Y"])
    return [TensorType(dtype, broadcast_shapes(c.shape, x.shape, y.shape, kind="Where"))]


@opdef("PRelu", ["X", "slope"], **_SAME)
def _prelu(op):
    """PRelu(X, slope): slope broadcasts (unidirectionally) to X."""
    x, s = op.inputs[0].type, op.inputs[1].type
    need_dtype("PRelu", "X", x, SIGNED_DTYPES, "float or signed int")
    same_dtype("PRelu", [x, s], ["X", "slope"])
    unidirectional("PRelu", "slope", s.shape, x.shape)
    return [x]
