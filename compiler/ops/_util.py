"""Shared helpers for op definitions: shape formatting, broadcasting, dtype and attribute checks.

Every check raises OpRuleError with a message that names the op, the rule and the values.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ..dtypes import FLOAT_DTYPES, INT_DTYPES, NUMERIC_DTYPES, SIGNED_DTYPES, is_float
from ..ir import Op, TensorType
from ..opdef import OpRuleError



def fmt(shape: Iterable[int]) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def broadcast_shapes(*shapes: Sequence[int], kind: str = "") -> tuple[int, ...]:
    """numpy (multidirectional) broadcast of `shapes`; OpRuleError when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            prefix = f"{kind}: " if kind else ""
            listed = " and ".join(fmt(s) for s in shapes)
            raise OpRuleError(f"{prefix}shapes {listed} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def unidirectional(kind: str, what: str, shape: Sequence[int], target: Sequence[int]) -> None:
    """`shape` must broadcast to exactly `target` (ONNX unidirectional broadcasting)."""
    ok = len(shape) <= len(target) and all(
        d in (1, t) for d, t in zip(reversed(shape), reversed(target)))
    if not ok:
        raise OpRuleError(f"{kind}: {what} shape {fmt(shape)} does not broadcast to {fmt(target)}")


# ---- operand types --------------------------------------------------------------------------

def operand(op: Op, i: int) -> TensorType | None:
    v = op.inputs[i] if i < len(op.inputs) else None
    return None if v is None else v.type


def need_dtype(kind: str, what: str, t: TensorType, allowed: Sequence[str], desc: str) -> None:
    if t.dtype not in allowed:
        raise OpRuleError(f"{kind}: {what} must be {desc}, got {t.dtype}")


def need_float(kind: str, what: str, t: TensorType) -> None:
    need_dtype(kind, what, t, FLOAT_DTYPES, "float (f16/f32/f64)")


def need_numeric(kind: str, what: str, t: TensorType) -> None:
    need_dtype(kind, what, t, NUMERIC_DTYPES, "numeric (not bool)")


def same_dtype(kind: str, types: Sequence[TensorType], names: Sequence[str] | None = None) -> str:
    """All `types` share one element type; returns it."""
    first = types[0].dtype
    for i, t in enumerate(types[1:], 1):
        if t.dtype != first:
            a = names[0] if names else "operand 0"
            b = names[i] if names else f"operand {i}"
            raise OpRuleError(f"{kind}: {b} is {t.dtype} but {a} is {first}; "
                              f"element types must match")
    return first


def need_rank(kind: str, what: str, t: TensorType, rank: int | None = None,
              min_rank: int | None = None) -> None:
    if rank is not None and t.rank != rank:
        raise OpRuleError(f"{kind}: {what} must have rank {rank}, got {fmt(t.shape)}")
    if min_rank is not None and t.rank < min_rank:
        raise OpRuleError(f"{kind}: {what} must have rank >= {min_rank}, got {fmt(t.shape)}")


def need_shape(kind: str, what: str, t: TensorType, shape: Sequence[int]) -> None:
    if t.shape != tuple(shape):
        raise OpRuleError(f"{kind}: {what} must have shape {fmt(shape)}, got {fmt(t.shape)}")


# ---- attributes -----------------------------------------------------------------------------

def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def attr_int(op: Op, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An int attribute in [lo, hi] (inclusive)."""
    x = op.attrs.get(name)
    if not _is_int(x):
        raise OpRuleError(f"{op.kind}: attribute '{name}' must be an int, got {x!r}")
    x = int(x)
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        rng = f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"
        raise OpRuleError(f"{op.kind}: attribute {name}={x} is out of range {rng}")
    return x


def attr_float(op: Op, name: str) -> float:
    x = op.attrs.get(name)
    if not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, bool):
        raise OpRuleError(f"{op.kind}: attribute '{name}' must be a number, got {x!r}")
    return float(x)


def attr_choice(op: Op, name: str, choices: Sequence[str]) -> str:
    x = op.attrs.get(name)
    if x not in choices:
        raise OpRuleError(f"{op.kind}: attribute {name}={x!r} must be one of {list(choices)}")
    return x


def attr_ints(op: Op, name: str, length: int | None = None, lo: int | None = None,
              what: str = "") -> list[int]:
    """A list[int] attribute (tuple / 1-D int array accepted), optionally of fixed length."""
    x = op.attrs.get(name)
    if x is None:
        raise OpRuleError(f"{op.kind}: attribute '{name}' is not filled in (canonical ops hold "
                          f"every attribute; build the op with build_op or canonicalize_attrs)")
    if isinstance(x, np.ndarray):
        x = x.tolist() if x.ndim == 1 else x
    if not isinstance(x, (list, tuple)) or not all(_is_int(v) for v in x):
        raise OpRuleError(f"{op.kind}: attribute '{name}' must be a list of ints, got {x!r}")
    x = [int(v) for v in x]
    if length is not None and len(x) != length:
        raise OpRuleError(f"{op.kind}: attribute {name}={x} must have {length} entries"
                          f"{' (' + what + ')' if what else ''}")
    if lo is not None and any(v < lo for v in x):
        raise OpRuleError(f"{op.kind}: attribute {name}={x} has an entry < {lo}")
    return x


def attr_axis(op: Op, name: str, rank: int, inclusive_end: bool = False) -> int:
    """A non-negative axis < rank (<= rank when inclusive_end, e.g. Flatten)."""
    x = op.attrs.get(name)
    if x is None:
        raise OpRuleError(f"{op.kind}: attribute '{name}' is not filled in")
    if not _is_int(x):
        raise OpRuleError(f"{op.kind}: attribute '{name}' must be an int, got {x!r}")
    hi = rank if inclusive_end else rank - 1
    if not 0 <= x <= hi:
        raise OpRuleError(f"{op.kind}: axis {name}={x} is out of range [0, {hi}] for rank {rank}"
                          f" (canonical axes are non-negative)")
    return int(x)


def attr_axes(op: Op, name: str, rank: int) -> list[int]:
    """Sorted, unique, non-negative axes < rank."""
    axes = attr_ints(op, name)
    for a in axes:
        if not 0 <= a < rank:
            raise OpRuleError(f"{op.kind}: axis {a} in {name}={axes} is out of range "
                              f"[0, {rank - 1}] (canonical axes are non-negative)")
    if axes != sorted(set(axes)):
        raise OpRuleError(f"{op.kind}: {name}={axes} must be sorted and unique")
    return axes


__all__ = ["fmt", "broadcast_shapes", "unidirectional", "operand", "need_dtype", "need_float",
           "need_numeric", "same_dtype", "need_rank", "need_shape", "attr_int", "attr_float",
           "attr_choice", "attr_ints", "attr_axis", "attr_axes", "is_float", "INT_DTYPES",
           "NUMERIC_DTYPES", "SIGNED_DTYPES"]
