"""count_flops: the arithmetic cost of one op, for report.json's flops_before / flops_after.

Conv, ConvTranspose, Gemm, MatMul and LSTM count 2 flops per multiply-accumulate. Elementwise
ops count one flop per output element; pools count one per window element; reductions,
softmax and normalizations one per input element; pure data movement counts 0. A Fused op
costs the sum over its body.
"""
from __future__ import annotations

import math

from ..ir import Op
from .elementwise import ELEMENTWISE_KINDS
from .layout import layout_of
from .movement import MOVEMENT_KINDS
from .rnn import lstm_dims

_FREE = set(MOVEMENT_KINDS) | {"Identity", "Dropout", "LayoutTransform"}


def count_flops(op: Op) -> int:
    kind = op.kind
    ins = [None if v is None else v.type for v in op.inputs]
    out = op.outputs[0].type if op.outputs else None
    if kind == "Fused":
        return sum(count_flops(o) for o in op.attrs["body"].ops)
    if kind in _FREE:
        return 0
    if kind == "Conv":
        # weights per output element: prod(W[1:]) = C/group·k...; a blocked W
        # [M/c, C/c|1, kh, kw, c|1, c] holds the same per output channel times the c lanes
        w = ins[1]
        lanes = layout_of(op).block or 1
        return 2 * out.numel * math.prod(w.shape[1:]) // lanes
    if kind == "ConvTranspose":
        x, w = ins[0], ins[1]
        return 2 * x.numel * math.prod(w.shape[1:])
    if kind == "Gemm":
        a = ins[0]
        k = a.shape[0] if op.attrs["transA"] else a.shape[1]
        return 2 * out.numel * k
    if kind == "MatMul":
        return 2 * out.numel * ins[0].shape[-1]
    if kind == "LSTM":
        seq, batch, inp, nd, h = lstm_dims(op)
        return 2 * seq * batch * nd * 4 * h * (inp + h)
    if kind in ("MaxPool", "AveragePool"):
        return out.numel * math.prod(op.attrs["kernel_shape"])
    if kind in ELEMENTWISE_KINDS:
        return out.numel
    return ins[0].numel
