"""The registry of TE lowering rules and the helpers the rule files share (a leaf of the
lowering: lower.py and the lower_*.py rule files import it, never the other way round).

    @lowering("Relu")
    def _relu(op, ins, target):   # ins: te.Tensor | None per operand; target: compiler.Target
        ...                       # returns one tensor per result

Rules read result shapes/dtypes from op.outputs (the IR's types are authoritative) and
canonical attributes from op.attrs. Only rules whose tensors depend on the target (the conv
lowering rounds rows to its vectors and tiles) read `target`.
"""
from __future__ import annotations

from typing import Callable

from tvm import te, tirx

from edgecc.dtypes import dtype_to_tvm, is_float
from edgecc.ir import Op
from edgecc.ops.layout import layout_of

Rule = Callable[[Op, list, object], list]
LOWERINGS: dict[str, Rule] = {}


def lowering(*kinds: str):
    def register(fn: Rule) -> Rule:
        for kind in kinds:
            assert kind not in LOWERINGS, f"lowering for {kind} registered twice"
            LOWERINGS[kind] = fn
        return fn
    return register


def tvm_dtype(short: str) -> str:
    return dtype_to_tvm(short)


def block_size(op) -> int | None:
    """c of an op whose `layout` attr is NCHW{c}c, None for plain NCHW."""
    return layout_of(op).block


def out_type(op, i=0):
    t = op.outputs[i].type
    return tuple(t.shape), tvm_dtype(t.dtype)


def bcast_index(t, idx):
    """Index of tensor `t` broadcast (numpy, right-aligned) into an output indexed by `idx`."""
    rank = len(t.shape)
    lead = len(idx) - rank
    return [0 if int(d) == 1 else idx[lead + j] for j, d in enumerate(t.shape)]


def broadcast_compute(op, tensors, fn, name=None):
    """out[idx] = fn(*(t[bcast idx])) over the op's result shape."""
    shape, _ = out_type(op)

    def body(*idx):
        return fn(*[t(*bcast_index(t, idx)) for t in tensors])
    return te.compute(shape, body, name=name or op.kind.lower())


def const(x, dtype):
    return tirx.const(x, dtype)


def etype(e) -> str:
    """The element type of a TIR expression (expressions carry `.ty` in TVM 0.27)."""
    return str(e.ty) if hasattr(e, "ty") else str(e.dtype)


def is_float_dtype(dtype: str) -> bool:
    return is_float(str(dtype))
