"""Default schedule of convolutions in the blocked layout NCHW{c}c (lower_nn._conv_blocked),
with the kernel's fused epilogue (bias, activation, residual add) applied per register tile.

Loop nest per thread, group 1 (c lanes vectorized, the rest unrolled):

    parallel n, m/NB, h:                     # output rows x groups of NB channel blocks
      xp = padded rows h*s .. of x           # per-task scratch, all C/c blocks (when padded)
      for w/T:                               # register tile: T columns x NB blocks x c lanes
        acc[T][NB][c] = 0
        for rc, ry, rx, ri:                  # input block, kernel row, column, lane
          acc[j][b][:] += xp[rc, h*s+ry, (w+j)*s+rx, ri] * wt[m+b, rc, ry, rx, ri, :]
        out[m:m+NB, h, w:w+T, :] = epilogue(acc)

Each reduction step loads NB weight vectors and T broadcast inputs for T*NB FMAs, so the
tile is as large as the register file allows (blocked_tile). Unlike the NCHW kernels the
vector runs along the channel lanes, not the output row: 7- and 14-wide rows vectorize as
well as wide ones. A depthwise conv (one input channel block per output block) keeps T
accumulators of c lanes and loads its own input vector per tap.

Only output loops are parallel, so results do not depend on the thread count.
"""
from __future__ import annotations

import itertools
import math

from tvm.s_tir import Schedule

from edgecc.backends.tvm.primitives import (ScheduleContext, extents, inline_injective,
                                            parallelize, schedule_injective, schedule_rule, try_)
from edgecc.target import Target
from edgecc.backends.tvm.knobs import knob

MAX_BLOCKS = 4          # output channel blocks per tile (NB)
MAX_DW_COLUMNS = 8      # depthwise: 8 measured 1.0-1.25x faster than 14-16
DW_SCRATCH_BYTES = 32 << 10   # a depthwise task's padded input band: within L1
MAX_COLUMNS = 16        # output columns per tile (T): beyond, the unrolled body only grows


def blocked_tile(blocks: int, width: int, c: int, lanes: int, registers: int,
                 depthwise: bool = False, block_weight_bytes: int = 0,
                 cache: int = 1 << 20) -> tuple[int, int]:
    """(T, NB): output columns and channel blocks of one register tile of a blocked conv
    with `blocks` output channel blocks of `c` lanes and rows `width` wide, on a target
    with `lanes` f32 per vector register and `registers` of them.

    Group 1: T*NB*v accumulators + NB*v weight vectors + 1 broadcast must fit the
    registers (v = vectors per c lanes). A reduction step issues F = T*NB*v FMAs and
    L = NB*v + T loads; its cost is modelled as F + L (measured on AVX-512, resnet50 shapes:
    7x1 runs at 0.78x of 7x2, 14x1 at 0.85x of 14x2, 4x4 at 1.03x of 7x2). A T that does
    not divide the width computes a rounded-up row whose extra columns are dropped; that
    costs more than its FMAs (the wider padded input, measured 0.78x for 4x4 on 7-wide rows
    instead of the expected 0.875x), so the useful fraction counts twice. NB divides `blocks`.
    Depthwise: T*v accumulators + an input and a weight vector; the widest such T, rounding
    waste counted the same way.
    Every tile reads the weights of its NB output blocks (`block_weight_bytes` each): more
    than `cache` (L2) and they stream from L3 for every tile (vgg19's 28x28 512-channel
    convs: 4x4 took 1.11x the time of 14x2, 1.1 vs 0.56 MiB of weights), so such NB are
    skipped."""
    v = -(-c // lanes)
    best, key = (1, 1), None
    for nb in ([1] if depthwise else range(1, min(blocks, MAX_BLOCKS) + 1)):
        if blocks % nb or (nb > 1 and nb * block_weight_bytes > cache):
            continue
        for t in range(1, min(width, MAX_DW_COLUMNS if depthwise else MAX_COLUMNS) + 1):
            if depthwise:
                if t * v + 2 * v > registers:
                    continue
                score = t
            else:
                if t * nb * v + nb * v + 1 > registers:
                    continue
                fmas = t * nb * v
                score = fmas / (fmas + nb * v + t)
            useful = width / (-(-width // t) * t)
            k = (score * useful * useful, t * nb)
            if key is None or k > key:
                best, key = (t, nb), k
    return best


def target_blocked_tile(target: Target, blocks: int, width: int, c: int, depthwise: bool,
                        block_weight_bytes: int) -> tuple[int, int]:
    """blocked_tile for `target`: what the lowering rounds the width to and the schedule
    tiles by (both must pick the same)."""
    return blocked_tile(blocks, width, c, target.lanes(), target.vector_registers, depthwise,
                        block_weight_bytes, target.cache_bytes)


def blocked_tiles(blocks: int, wide: int, c: int, lanes: int, registers: int,
                  depthwise: bool = False) -> list[tuple[int, int]]:
    """Every (T, NB) register tile of a blocked conv on rows lowered `wide` columns wide,
    for tuning (schedule_knobs): T divides `wide` (the workload is fixed by the default
    tile), NB divides `blocks` (up to 2 * MAX_BLOCKS), the registers as blocked_tile counts
    them. Most promising first: blocked_tile's FMAs-per-step score, then larger tiles."""
    v = -(-c // lanes)
    tiles = []
    for nb in ([1] if depthwise else range(1, min(blocks, 2 * MAX_BLOCKS) + 1)):
        for t in range(1, min(wide, MAX_COLUMNS) + 1):
            if blocks % nb or wide % t:
                continue
            if depthwise:
                if t * v + 2 * v > registers:
                    continue
                score = t / (t + 1)
            else:
                if t * nb * v + nb * v + 1 > registers:
                    continue
                score = t * nb * v / (t * nb * v + nb * v + t)
            tiles.append((score, t * nb, (t, nb)))
    return [t for *_, t in sorted(tiles, reverse=True)]


def blocked_conv_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    lean = ctx.lean
    lanes, registers = ctx.target.lanes(), ctx.target.vector_registers
    inline_injective(sch, keep=("conv_pad",))
    conv = sch.get_sblock("conv_blocked")
    loops = sch.get_loops(conv)
    if len(loops) not in (7, 9):                    # depthwise: 2 reduce loops, else 4
        raise ValueError("not a 2-D blocked convolution")
    n, m, h, w, o, *red = loops
    depthwise = len(red) == 2
    blocked_input = not depthwise and extents(sch, red[-1:])[0] > 1   # ri: c, or 1 (stem)
    if lean and depthwise and _has_block(sch, "conv_pad"):
        sch.compute_inline(sch.get_sblock("conv_pad"))    # bounds-checked taps, no band
    blocks, wide, c = extents(sch, [m, w, o])
    width = int(sch.get(conv).annotations.get("edgecc.width", wide))
    weights = math.prod(extents(sch, red)) * c * 4          # of one output block
    t, nb = target_blocked_tile(ctx.target, blocks, width, c, depthwise, weights)
    t, nb = knob("blocked.tile", (t, nb), lambda: blocked_tiles(
        blocks, wide, c, lanes, registers, depthwise))
    if wide % t:
        raise ValueError(f"tile of {t} columns does not divide the lowered width {wide}")
    mo, mi = sch.split(m, [None, nb])
    wo, wi = sch.split(w, [None, t])
    # reduction loop order: rc, ry, rx, ri; a stem with wide taps (3 NCHW input channels,
    # 7x7) runs its taps outside the channels (ry, rx, rc, ri: 1.2x on resnet50's and
    # inception's 7x7 stems; 3x3 stems 0.95-1.02x, so not them). Tuning tries the
    # permutations keeping the input lanes innermost, group 1 (others measured 1.3x slower)
    wide_stem = not depthwise and not blocked_input and extents(sch, red[2:3])[0] >= 5
    order = knob("blocked.order", (1, 2, 0, 3) if wide_stem else tuple(range(len(red))),
                 lambda: [p for p in itertools.permutations(range(len(red)))
                          if depthwise or p[-1] == 3])
    red = [red[i] for i in order]
    sch.reorder(n, mo, h, wo, *red, wi, mi, o)
    if sch.get_consumers(conv):
        sch.set_scope(conv, 0, "local")
    else:
        sch.cache_write(conv, 0, "local")
    epilogue = _epilogue_at(sch, conv, wo)
    if depthwise:
        # a task runs a band of rows: its padded input is copied once for rows that
        # overlap, and stays within DW_SCRATCH_BYTES (see depthwise_rows)
        ann = sch.get(conv).annotations
        padded = _has_block(sch, "conv_pad")
        wp = extents(sch, sch.get_loops(sch.get_sblock("conv_pad"))[3:4])[0] if padded \
            else wide
        band = (extents(sch, [h])[0], int(ann.get("edgecc.row_stride", 1)),
                int(ann.get("edgecc.row_window", 1)), wp * c * 4)
        rows = knob("blocked.rows", depthwise_rows(*band),
                       lambda: depthwise_row_choices(*band))
        ho, _ = sch.split(h, [None, rows])
        task = sch.fuse(n, mo, ho)
    else:
        task = sch.fuse(n, mo, h)
    sch.parallel(task)
    sch.unroll(wi)
    sch.unroll(mi)
    sch.vectorize(o)
    for e in epilogue:
        _vectorize_lanes(sch, e, lanes)
    sch.decompose_reduction(conv, red[0])
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(blk).name_hint == "conv_pad":
            # The whole padded input first (0), per task (1: the kh input rows of a task,
            # copied again for every group of NB output blocks and every output row that
            # reads them), or per register tile (2: those rows x T columns, a scratch L1
            # holds). Group 1 with blocked input: 0, once per input element (vgg19's 3x3
            # convs 1.02-1.09x faster than 1). Stems reading NCHW input and depthwise row
            # bands: 1 (0 measured 0.8-0.9x on the stems). Lean kernels at the arena's peak:
            # 2 (0.94-1.0x of 1; reading padded rows in place measured 2.1-2.5x slower).
            where = knob("blocked.pad_per_task", 2 if lean else 0 if blocked_input else 1,
                         lambda: [1, 0, 2])
            if where == 2:
                sch.compute_at(blk, wo)
            elif where == 1:
                sch.compute_at(blk, task)
            else:
                lead = sch.get_loops(blk)[:3]
                parallelize(sch, lead, extents(sch, lead))
            _vectorize_lanes(sch, blk, lanes)


def _epilogue_at(sch: Schedule, conv, loop) -> list:
    """Compute every stage downstream of `conv` (its epilogue: bias, activations, residual
    adds, results that are also read outside the kernel) per tile, inside `loop`."""
    downstream, todo = [], list(sch.get_consumers(conv))
    names = set()
    while todo:
        b = todo.pop()
        if sch.get(b).name_hint not in names:
            names.add(sch.get(b).name_hint)
            todo += list(sch.get_consumers(b))
    for b in sch.get_child_blocks(sch.get_sblock("root")):     # in producer order
        name = sch.get(b).name_hint
        if name in names:
            try:
                sch.reverse_compute_at(b, loop)
                downstream.append(sch.get_sblock(name))
            except Exception:      # cannot follow the tile: its own loop nest
                schedule_injective(sch, b)
    return downstream


def depthwise_rows(height: int, stride: int, window: int, row_bytes: int) -> int:
    """Output rows per task of a depthwise conv: the most (dividing `height`) whose padded
    input band, ((rows - 1) * stride + window) rows of `row_bytes`, fits DW_SCRATCH_BYTES.
    Measured on AVX-512 (mobilenet shapes, 16 lanes): bands of 4-14 rows run 1.5-2.7x
    faster than one row per task (3 input rows copied per row) on 7- to 56-wide planes;
    whole planes larger than L1 are slower again (112-wide stride 2: 0.75x)."""
    fits = [r for r in range(1, height + 1) if height % r == 0
            and ((r - 1) * stride + window) * row_bytes <= DW_SCRATCH_BYTES]
    return max(fits, default=1)


def depthwise_row_choices(height: int, stride: int, window: int,
                          row_bytes: int) -> list[int]:
    """Rows per depthwise task for tuning: the divisors of `height` whose band stays within
    4 * DW_SCRATCH_BYTES (L2 rather than L1), nearest to depthwise_rows' pick first."""
    best = depthwise_rows(height, stride, window, row_bytes)
    fits = [r for r in range(1, height + 1) if height % r == 0
            and ((r - 1) * stride + window) * row_bytes <= 4 * DW_SCRATCH_BYTES]
    return [r for r in sorted(set(fits) | {best},
                                 key=lambda r: (abs(math.log2(r / best)), -r))]


def _has_block(sch: Schedule, name: str) -> bool:
    return any(sch.get(b).name_hint == name
               for b in sch.get_child_blocks(sch.get_sblock("root")))


def _vectorize_lanes(sch: Schedule, blk, lanes: int) -> None:
    """Vectorize a blocked stage's innermost (c lanes) loop; lanes narrower than a vector
    take the column loop with them when it fits."""
    loops = sch.get_loops(blk)
    ext = extents(sch, loops[-2:])
    if len(loops) >= 2 and ext[-1] < lanes and (ext[0] * ext[1]) % lanes == 0:
        _, inner = sch.split(sch.fuse(*loops[-2:]), [None, lanes])
        try_(sch.vectorize, inner)
    else:
        try_(sch.vectorize, loops[-1])


@schedule_rule("LayoutTransform")
def layout_transform_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    """NCHW <-> NCHW{c}c (lower_data._layout_transform, with any fused elementwise ops),
    parallel over (n, channel block, ...). To blocked: the c lanes of a pixel are one vector
    store, gathered from c channel planes. To NCHW: per group of pixels, c contiguous vector
    stores along the H*W plane, the loads strided by c (the plane split into whole vectors of
    16, 8 or 4, else scalar). Both ran at 50-57 GB/s on AVX-512 for c = 4..16 (about 30 for a
    7x7 plane to NCHW); a transpose through a local [lanes, c] tile measured no faster."""
    inline_injective(sch)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        raise ValueError("expected one layout transform stage")
    blk = blocks[0]
    loops = sch.get_loops(blk)
    work = math.prod(extents(sch, loops))
    if len(loops) == 5:                              # NCHW -> NCHW{c}c
        n, cb, h, w, i = loops
        parallelize(sch, [n, cb, h], extents(sch, [n, cb, h]), work)
        sch.vectorize(i)
        return
    if len(loops) != 4:
        raise ValueError("not a 2-D layout transform")
    n, ch, h, w = loops                              # NCHW{c}c -> NCHW
    blocked = [r.source for r in sch.get(blk).reads if len(r.source.shape) == 5]
    if not blocked:
        raise ValueError("no blocked operand")
    c = int(blocked[0].shape[-1])
    cb, i = sch.split(ch, [None, c])
    plane = sch.fuse(h, w)
    size = extents(sch, [plane])[0]
    v = next((v for v in (ctx.target.lanes(), 8, 4) if size % v == 0), None)
    outer = [n, cb]
    if v is not None:
        po, pv = sch.split(plane, [None, v])
        sch.reorder(n, cb, po, i, pv)
        outer.append(po)
    parallelize(sch, outer, extents(sch, outer), work)
    if v is not None:
        sch.unroll(i)
        sch.vectorize(pv)
