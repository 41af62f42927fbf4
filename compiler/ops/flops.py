"""count_flops: the arithmetic cost of one op, for report.json's flops_before / flops_after.

Ops with a cost model of their own declare it (`flops=` on @opdef: Conv, ConvTranspose,
Gemm, MatMul and LSTM count 2 flops per multiply-accumulate; pools one per window element).
Otherwise: pure data movement counts 0, elementwise ops one flop per output element,
reductions, softmax and normalizations one per input element. A Fused op costs the sum over
its body.
"""
from __future__ import annotations

from ..ir import Op
from ..opdef import get_opdef


def count_flops(op: Op) -> int:
    if op.kind == "Fused":
        return sum(count_flops(o) for o in op.attrs["body"].ops)
    d = get_opdef(op.kind)
    if d is not None and d.flops is not None:
        return int(d.flops(op))
    traits = d.traits if d is not None else frozenset()
    if "movement" in traits or "view" in traits:
        return 0
    if "elementwise" in traits:
        return op.outputs[0].type.numel
    return op.inputs[0].type.numel
