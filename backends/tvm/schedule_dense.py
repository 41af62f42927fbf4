"""Default schedule of dense products (Gemm, MatMul), with the kernel's fused epilogue (alpha,
C / bias, activation) applied on each finished tile.

Two shapes of loop nest, chosen from the single reduction block [batch..., (i), j | k]:

matrix-vector (M == 1, or a few rows by a long K; B read as [N, K]: Gemm transB, the batch-1
FC layers of alexnet/vgg, an LSTM's input projection batched over time): memory bound,
streaming the weights once. The K loop is split into VL lanes and rfactor'ed, so each output
column is VL vector partial sums over contiguous weights, combined at the end; rows go in
pairs inside a chunk of columns (the chunk's weights stay in cache, each weight vector loaded
feeds two FMAs):

    parallel j/JC, i/2:                         # JC output columns per chunk
      part[2][JC][VL] = 0                       # local: registers
      for ko:  part[r][c][:] += a[i+r, ko*VL : +VL] * w[j+c, ko*VL : +VL]   (r, c unrolled)
      out[i:i+2, j:j+JC] = epilogue(sum(part[r][c][:]))

everything else (B read as [K, N], or many rows, or a short K): MI x VW register tiles over
(i, j), VW lanes contiguous in B's N axis, K innermost (schedule_conv.conv_tile sizes the
tile). B read as [N, K] is first copied to [K, N] (one pass over B, amortized over M rows):

    parallel batch, i/MI, j/VW:
      acc[MI][VW] = 0
      for k:  acc[r][:] += a[i+r, k] * b[k, j : j+VW]                  (r unrolled)
      out[i:i+MI, j:j+VW] = epilogue(acc)

Only output loops are parallel; each output's summation order is fixed, so results do not
depend on the thread count (the rfactor order is lane-wise partial sums, like schedule_pool).
"""
from __future__ import annotations

from tvm.s_tir import Schedule

from edgecc.backends.tvm.schedule_conv import conv_tile, conv_tiles
from edgecc.backends.tvm.knobs import knob
from edgecc.backends.tvm.schedule_pool import lane_split
from edgecc.backends.tvm.primitives import (ScheduleContext, extents, schedule_injective,
                                            schedule_rule, sole_reduction, try_)

# A few rows by a long K also take the matrix-vector form, rows reused from cache while the
# weights stream once (vs the tiled form, which would copy [N, K] to [K, N] at every call).
# Measured (1 thread, Sapphire Rapids): 20x4096x400 0.58x, 8x1024x1024 0.24x, 32x768x3072
# 0.44x the tiled form's time; but K=128 1.5x, K=256 1.1x (the horizontal sums dominate).
GEMV_MAX_ROWS = 32
GEMV_MIN_K = 512
GEMV_ROW_PAIR = 2
GEMV_COLUMNS = 4          # output columns per matrix-vector chunk (independent FMA chains)
PARALLEL_MIN_WORK = 1 << 14


@schedule_rule("Gemm", "MatMul")
def dense_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    blk, loops, kinds = sole_reduction(sch, "product")
    if len(loops) != len(kinds) or kinds[-1] == 0 or any(k != 0 for k in kinds[:-1]):
        raise ValueError("not a [spatial..., k] product nest")
    spatial, k = loops[:-1], loops[-1]
    if not spatial:                                   # vector . vector: one output
        try_(sch.decompose_reduction, blk, k)
        return
    _, b_read = _operands(sch, blk)
    lanes, registers = ctx.target.lanes(), ctx.target.vector_registers
    rows, n_k = _rows(sch, blk), extents(sch, [k])[0]
    if (rows == 1 or (rows <= GEMV_MAX_ROWS and n_k >= GEMV_MIN_K)) and b_read is not None \
            and _contiguous_in_k(sch, blk, b_read):
        _gemv_k_vectorized(sch, blk, lanes, registers)
    else:
        _register_tiled(sch, blk, lanes, registers)


def _operands(sch, blk):
    """(a, b) read regions of the product (b: the one indexed by the output's last axis)."""
    reads = list(sch.get(blk).reads)
    if len(reads) != 2:
        return None, None
    return reads[0], reads[1]


def _contiguous_in_k(sch, blk, b_read) -> bool:
    """True when B's innermost index is the reduction variable k (weights stored [N, K])."""
    k_var = sch.get(blk).iter_vars[-1].var
    last = b_read.region[-1].min
    return last.same_as(k_var) and len(b_read.region) >= 2


def _gemv_k_vectorized(sch, blk, lanes, registers):
    loops = sch.get_loops(blk)
    spatial, k = loops[:-1], loops[-1]
    n_k = extents(sch, [k])[0]
    vl = lane_split(n_k, lanes)
    if vl < 4 or n_k < 2 * vl:                        # K too short/ragged: tile over N
        _register_tiled(sch, blk, lanes, registers)
        return
    ko, ki = sch.split(k, [None, vl])
    rf = sch.rfactor(ki, factor_axis=len(spatial))    # rf[..., j, lane] over ko
    # the combining block (blk) owns the output loops; rf is computed per chunk of columns
    out_loops = sch.get_loops(blk)[:len(spatial)]
    n_j = extents(sch, out_loops[-1:])[0]
    jc = max(d for d in range(1, GEMV_COLUMNS + 1) if n_j % d == 0)
    jc = knob("dense.columns", jc, lambda: [d for d in range(2 * GEMV_COLUMNS, 0, -1)
                                            if n_j % d == 0])
    jo, ji = sch.split(out_loops[-1], [None, jc])
    lead = out_loops[:-1]
    rows = extents(sch, lead[-1:])[0] if lead else 1
    ir = GEMV_ROW_PAIR if rows % GEMV_ROW_PAIR == 0 else 1
    if lead:
        # rows inside the column chunk: the chunk's weights are read from memory once; rows
        # in pairs, so each weight vector loaded feeds two FMAs
        if ir > 1:
            i_o, i_i = sch.split(lead[-1], [None, ir])
            lead = [*lead[:-1], i_o]
            sch.reorder(jo, *lead, i_i)
        else:
            sch.reorder(jo, *lead)
    par = sch.fuse(jo, *lead) if lead else jo
    epilogue = list(sch.get_consumers(blk))
    for e in epilogue:
        sch.reverse_compute_at(e, par)
    sch.compute_at(rf, par)
    sch.set_scope(rf, 0, "local")
    rf_loops = sch.get_loops(rf)
    below = rf_loops[[sch.get(lp).same_as(sch.get(par)) for lp in rf_loops].index(True) + 1:]
    rl = [lp for lp, e in zip(below, extents(sch, below)) if e != 1]
    # below par, in the rf block's iter order: [lane, row (if paired), j (if jc > 1), ko]
    middle = ([ir] if ir > 1 else []) + ([jc] if jc > 1 else [])
    if extents(sch, rl) != [vl] + middle + [n_k // vl]:
        raise ValueError("unexpected rfactor loop nest")
    lane, ko = rl[0], rl[-1]
    sch.reorder(ko, *rl[1:-1], lane)                   # ko, (row,) (j,) lane
    for lp in rl[1:-1]:
        sch.unroll(lp)
    if n_j * n_k >= PARALLEL_MIN_WORK:
        sch.parallel(par)
    sch.vectorize(rl[0])
    sch.decompose_reduction(rf, rl[-1])
    for e in epilogue:
        try_(sch.vectorize, sch.get_loops(e)[-1])


def _register_tiled(sch, blk, lanes, registers):
    """MI x VW tiles over the last two output axes (a 1-row product tiles N only)."""
    _, b_read = _operands(sch, blk)
    if b_read is not None and _contiguous_in_k(sch, blk, b_read) and _rows(sch, blk) > 1:
        _transpose_b(sch, blk)
    loops = sch.get_loops(blk)
    spatial, k = loops[:-1], loops[-1]
    ext = extents(sch, spatial)
    if len(spatial) >= 2:
        lead, i, j = spatial[:-2], spatial[-2], spatial[-1]
        n_i, n_j = ext[-2], ext[-1]
    else:
        lead, i, j = [], None, spatial[-1]
        n_i, n_j = 1, ext[-1]
    mi, vw = conv_tile(n_i, n_j, lanes, registers)
    mi, vw = knob("dense.tile", (mi, vw), lambda: conv_tiles(n_i, n_j, lanes, registers))
    jo, ji = sch.split(j, [None, vw])
    if i is not None:
        io, ii = sch.split(i, [None, mi])
        sch.reorder(*lead, io, jo, k, ii, ji)
        outer = [*lead, io, jo]
    else:
        ii = None
        sch.reorder(*lead, jo, k, ji)
        outer = [*lead, jo]
    epilogue = list(sch.get_consumers(blk))
    if epilogue:
        sch.set_scope(blk, 0, "local")
    else:
        epilogue = [sch.cache_write(blk, 0, "local")]
    for e in epilogue:
        sch.reverse_compute_at(e, jo)
    work = 1
    for e in extents(sch, sch.get_loops(blk)):
        work *= e
    par = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if work >= PARALLEL_MIN_WORK:
        sch.parallel(par)
    if vw > 1:
        sch.vectorize(ji)
    if ii is not None and mi > 1:
        sch.unroll(ii)
    for e in epilogue:
        if vw > 1:
            try_(sch.vectorize, sch.get_loops(e)[-1])
    sch.decompose_reduction(blk, k)


def _rows(sch, blk) -> int:
    ext = extents(sch, sch.get_loops(blk))
    return ext[-3] if len(ext) >= 3 else 1


def _transpose_b(sch, blk):
    """Copy B ([..., N, K]) to [..., K, N] so a tile's VW columns are one vector load."""
    cache = sch.cache_read(blk, 1, "global")
    sch.transform_layout(cache, ("write", 0), lambda *idx: (*idx[:-2], idx[-1], idx[-2]))
    *lead, n, k = sch.get_loops(cache)
    n_n, n_k = extents(sch, [n, k])
    b = 8
    if n_n % b or n_k % b:                   # rows read contiguously, written strided
        schedule_injective(sch, cache)
        return
    # 8 x 8 blocks: 8 source rows stay in cache while 8 contiguous columns are written
    n0, n1 = sch.split(n, [None, b])
    k0, k1 = sch.split(k, [None, b])
    sch.reorder(*lead, n0, k0, k1, n1)
    outer = sch.fuse(*lead, n0) if lead else n0
    if n_n * n_k >= PARALLEL_MIN_WORK:
        sch.parallel(outer)
    sch.vectorize(n1)
