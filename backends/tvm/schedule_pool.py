"""Default schedule of global average pooling: one output per (n, c) summed over the whole
H x W plane. (GlobalMaxPool keeps the generic schedule: rfactor does not recognize the
lowering's max reducer.)

The generic schedule reduces each plane with a scalar loop. Here the innermost reduction
loop (along W, contiguous) is split into VL lanes and rfactor'ed: VL partial results are
accumulated with vector loads, then combined; (n, c) planes are spread over threads. The
order of the additions differs from a sequential sum (lane-wise partial sums), but it is
fixed: results do not depend on the thread count.
"""
from __future__ import annotations

import math

from tvm.s_tir import Schedule

from edgecc.backends.tvm.primitives import (ScheduleContext, extents, generic_schedule,
                                            parallelize, schedule_injective, schedule_rule,
                                            sole_reduction, try_)


def lane_split(width: int, lanes: int) -> int:
    """The widest divisor of `width` up to `lanes` (so a vector never straddles rows)."""
    return max(d for d in range(1, min(width, lanes) + 1) if width % d == 0)


@schedule_rule("GlobalAveragePool")
def global_pool_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    if _blocked(sch):
        blocked_pool_schedule(sch)
        return
    red, loops, kinds = sole_reduction(sch, "reduction")
    spatial = [lp for lp, k in zip(loops, kinds) if k == 0]
    reduce_ = [lp for lp, k in zip(loops, kinds) if k != 0]
    if len(spatial) + len(reduce_) != len(loops) or not reduce_:
        raise ValueError("not a plain reduction nest")
    f = lane_split(extents(sch, reduce_[-1:])[0], ctx.target.lanes())
    if f < 4:                                    # rows too narrow to vectorize
        generic_schedule(sch, ctx)
        return
    ro, ri = sch.split(reduce_[-1], [None, f])
    rf = sch.rfactor(ri, factor_axis=len(spatial))
    rf_loops = sch.get_loops(rf)                 # spatial..., reduce_[:-1], ro, ri
    sch.reorder(*rf_loops[:len(spatial)], *rf_loops[len(spatial):-1], rf_loops[-1])
    rf_loops = sch.get_loops(rf)
    work = 1
    for e in extents(sch, rf_loops):
        work *= e
    outer = parallelize(sch, rf_loops[:len(spatial)], extents(sch, rf_loops[:len(spatial)]),
                         work)
    sch.vectorize(sch.get_loops(rf)[-1])
    sch.reverse_compute_at(red, outer)
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(blk).name_hint not in (sch.get(red).name_hint, sch.get(rf).name_hint):
            try:
                sch.reverse_compute_at(blk, outer)
            except Exception:          # an output stage that cannot move: its own loops
                schedule_injective(sch, blk)


# ---- the blocked layout NCHW{c}c (lower_pool names its stages *_blocked) ----------------------

def _blocked(sch: Schedule) -> bool:
    return any(sch.get(b).name_hint.endswith("_blocked")
               for b in sch.get_child_blocks(sch.get_sblock("root")))


@schedule_rule("MaxPool", "AveragePool", "GlobalMaxPool")
def pool_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    if _blocked(sch):
        blocked_pool_schedule(sch)
    else:
        generic_schedule(sch, ctx)


def blocked_pool_schedule(sch: Schedule) -> None:
    """Pooling of [N, C/c, H, W, c]: the c lanes of an output pixel are one vector, the
    window loops run outside it (for a global pool: the whole plane, summed in order), the
    epilogue (the average's division, fused activations) per output pixel; parallel over
    (n, channel block, output row)."""
    red, loops, kinds = sole_reduction(sch, "pooling")
    if len(loops) != len(kinds) or kinds[:5] != [0] * 5 or len(loops) < 6:
        raise ValueError("not a blocked 2-D pooling nest")
    n, cb, h, w, lane = loops[:5]
    sch.reorder(n, cb, h, w, *loops[5:], lane)
    epilogue = list(sch.get_consumers(red))
    if epilogue:
        sch.set_scope(red, 0, "local")
    else:                                   # accumulate in a register, store once
        epilogue = [sch.cache_write(red, 0, "local")]
    for e in epilogue:
        sch.reverse_compute_at(e, w)
    ext = extents(sch, [n, cb, h])
    parallelize(sch, [n, cb, h], ext, math.prod(extents(sch, sch.get_loops(red))))
    if extents(sch, [lane])[0] > 1:
        sch.vectorize(lane)
        for e in epilogue:
            try_(sch.vectorize, sch.get_loops(e)[-1])
    sch.decompose_reduction(red, loops[5])
