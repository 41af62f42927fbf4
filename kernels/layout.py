"""The blocked channel layout NCHW{c}c (compiler/ops/layout.py): LayoutTransform, and
`blocked_layout`, which lets an NCHW kernel run the blocked form of its op by unblocking the
operands, running the NCHW computation and blocking the result (the oracle stays obvious)."""
from __future__ import annotations

import functools

from edgecc.ops.layout import block_nchw, layout_of, unblock_conv_weight, unblock_nchw

from .registry import Kernel, kernel


@kernel("LayoutTransform")
def layout_transform(op, ins):
    c = layout_of(op, "dst_layout").block
    return [unblock_nchw(ins[0]) if c is None else block_nchw(ins[0], c)]


def blocked_layout(fn: Kernel) -> Kernel:
    """Wrap the NCHW kernel of a layout-aware op (its attrs other than `layout` mean the same
    in both layouts); a blocked Conv's 6-D W is unblocked to [M, C/group, kh, kw]."""
    @functools.wraps(fn)
    def run(op, ins):
        c = layout_of(op).block
        if c is None:
            return fn(op, ins)
        ins = list(ins)
        ins[0] = unblock_nchw(ins[0])
        if op.kind == "Conv":
            ins[1] = unblock_conv_weight(ins[1])
        return [block_nchw(r, c) for r in fn(op, ins)]
    return run
