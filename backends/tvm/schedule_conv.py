"""Default schedule of direct 2-D convolutions (dense, pointwise, grouped and depthwise), with
the kernel's fused epilogue (bias, activation, residual add) applied per register tile.

Loop nest per thread (the padded input rows a task reads are copied first, so the inner
loop has no bounds checks; pad_per_task):

    parallel n, m/(MI*G), h:                 # output rows x groups of G channel blocks
      xp = padded rows h*s .. h*s+kh-1 of x  # per-task scratch: C x kh x padded W
      for G, w/VW:                           # register tile: MI channels x VW columns
        acc[MI][VW] = 0                      # cache_write "local": lives in registers
        for rc, kh, kw:  acc[i][:] += x[rc, h+kh, w+kw : +VW] * wt[m+i, rc, kh, kw]
        out[m:m+MI, h, w:w+VW] = epilogue(acc)

VW (vectorized output columns) and MI (broadcast weights, unrolled) come from a register
model of the target: the MI x ceil(VW/lanes) accumulators plus one input vector per column
group and a broadcast weight must fit the vector register file (AVX-512 and NEON have 32,
AVX2 16). VW divides the output width (no tail predicates in the vector loop): a multiple
of the lanes up to 2 vectors, else the largest divisor up to one vector. Only output loops
are parallel, so results do not depend on the thread count.

The lowering (lower_nn._conv) prepares the data this nest wants: rows computed over a width
rounded up to whole vectors (extra outputs dropped), W-strided inputs split by phase so a
tile's taps are contiguous, weights packed [M/MI, C, kh, kw, MI] when MI weight rows would
collide in L1 sets; pointwise convs with a whole-vector H*W plane are tiled over the
flattened plane. ConvTranspose with kernel == stride is a per-phase pointwise conv tiled
the same way.
"""
from __future__ import annotations

import itertools
import math

from tvm.s_tir import Schedule

from . import schedule_conv_blocked as blocked  # registers the blocked-layout rules too
from edgecc.backends.tvm.knobs import knob
from edgecc.backends.tvm.primitives import (ScheduleContext, extents, inline_injective,
                                            parallelize, schedule_injective, schedule_rule,
                                            try_)


WEIGHTS_PER_TASK = 1 << 20       # bytes: about the L2 of one core


def conv_tile(out_channels: int, width: int, lanes: int, registers: int,
              depthwise: bool = False, group_channels: int = 0) -> tuple[int, int]:
    """(MI, VW) for a conv with `out_channels` x `width` outputs per row on a target with
    `lanes` f32 per vector and `registers` vector registers. A depthwise conv loads its own
    input per channel, so one vector per row is enough (2 measured 1.17x slower). A grouped
    conv (`group_channels` outputs per group) takes the largest MI dividing them that the
    registers hold: its tile never straddles two groups (shufflenet's group-4 1x1 convs,
    34-136 channels per group: MI 17 ran 1.16-1.36x faster than 8 or 16)."""
    # a multiple of the lanes up to 2 vectors, else at most one (partial) vector: wider odd
    # vectors are split by LLVM into many small pieces (measured 10x slower at 27 columns)
    fits = [d for d in range(1, min(width, lanes if depthwise else 2 * lanes) + 1)
            if width % d == 0 and (d % lanes == 0 or d <= lanes)]
    vw = max(fits, key=lambda d: (d % lanes == 0, d % min(8, lanes) == 0, d))
    groups = -(-vw // lanes)                     # vector registers per accumulator row
    budget = registers - groups - 2              # input vectors + a broadcast + spare
    if group_channels:
        return max((d for d in range(1, group_channels + 1)
                    if group_channels % d == 0 and d * groups <= budget), default=1), vw
    mi = max((d for d in range(1, min(out_channels, 16) + 1)
              if out_channels % d == 0 and d * groups <= budget), default=1)
    return mi, vw


def conv_tiles(out_channels: int, width: int, lanes: int, registers: int,
               depthwise: bool = False, packed: int = 0) -> list[tuple[int, int]]:
    """Every (MI, VW) tile that fits the registers (as conv_tile counts them), for tuning
    (schedule_knobs): MI divides `out_channels` (and the weights' packing `packed`), VW the
    width, whole vectors up to 4 or at most one vector. Most promising first: FMAs per
    load of a reduction step (MI*v FMAs, MI broadcasts + v input vectors, depthwise
    MI*v more), times the used fraction of the vectors."""
    tiles = []
    for vw in range(1, min(width, 4 * lanes) + 1):
        if width % vw or not (vw % lanes == 0 or vw <= lanes):
            continue
        v = -(-vw // lanes)
        for mi in range(1, min(out_channels, registers) + 1):
            if out_channels % mi or (packed and packed % mi) or mi * v + v + 2 > registers:
                continue
            fmas = mi * v
            loads = mi + (fmas if depthwise else v)
            tiles.append((fmas / (fmas + loads) * vw / (v * lanes), mi * vw, (mi, vw)))
    return [t for *_, t in sorted(tiles, reverse=True)]


@schedule_rule("Conv")
def conv_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    if any(sch.get(b).name_hint == "conv_blocked"
           for b in sch.get_child_blocks(sch.get_sblock("root"))):
        blocked.blocked_conv_schedule(sch, ctx)    # layout NCHW{c}c
        return
    inline_injective(sch, keep=ctx.staged("conv_pad", "conv_wpack"))
    conv = sch.get_sblock("conv")
    loops = sch.get_loops(conv)
    if len(loops) != 7:                             # 2-D convolution only
        raise ValueError("not a 2-D convolution")
    n, m, h, w, rc, kh, kw = loops
    # (a flattened plane's accumulator is per-task scratch: none under scratch_free)
    if not ctx.lean and pointwise_plane(sch, conv):
        register_tiled(sch, ctx, conv, [n], m, [], sch.fuse(h, w), [rc, kh, kw],
                       own_consumers=True, plane=True)
        return
    if flat_padded(sch, conv):          # lower_nn._conv_flat_padded: the padded plane first
        # the epilogue reads the [1, P] plane as [H, W]: TVM cannot follow that per tile
        # (it inferred a wrong region), so it runs as its own parallel loop nest
        epilogue = [sch.get(b).name_hint for b in sch.get_consumers(conv)]
        register_tiled(sch, ctx, conv, [n], m, [], sch.fuse(h, w), [rc, kh, kw],
                       own_consumers=False, plane=True)
        for name in ["conv_pad"] + epilogue:
            schedule_injective(sch, sch.get_sblock(name), count_lanes=True)
        return
    task = register_tiled(sch, ctx, conv, [n], m, [h], w, [rc, kh, kw], own_consumers=True)
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(blk).name_hint == "conv_wpack":
            schedule_injective(sch, blk)
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(blk).name_hint == "conv_pad":
            # per task (1), or the whole padded input first (0: measured 3.3x faster on
            # shufflenet's group-4 1x1 convs on 14x14 rows padded to 16, whose tasks would
            # each copy their group's rows for a few channels; the default there)
            grouped_1x1 = extents(sch, [kh, kw]) == [1, 1] and extents(sch, [rc])[0] < \
                int(sch.get(blk).writes[0].source.shape[1])
            if knob("conv.pad_per_task", 0 if grouped_1x1 else 1, lambda: [1, 0]):
                pad_per_task(sch, blk, task, ctx.target.lanes())
            else:      # in parallel (2 threads: shufflenet's 14x14 group conv 58 -> 42 us)
                schedule_injective(sch, blk, count_lanes=True)


def pad_per_task(sch: Schedule, pad, task, lanes: int) -> None:
    """Compute the padded (phase-split) input inside each parallel task, only the rows (and,
    for a 1x1 strided conv, the one phase) that task's output row reads: the scratch is
    C x kh rows x padded width per task instead of a copy of the whole input. The copy is
    redone per task (per G channel blocks, register_tiled): with G = 1 it measured up to
    2.8x slower on resnet50's strided 3x3 conv, with G blocks sharing it about even."""
    sch.compute_at(pad, task)
    inner = sch.get_loops(pad)[-1]
    if extents(sch, [inner])[0] % lanes == 0:
        try_(sch.vectorize, sch.split(inner, [None, lanes])[1])


def flat_padded(sch: Schedule, conv) -> bool:
    """A 1x1 conv computed on its flattened, padded plane [N, C, 1, P]."""
    pads = [p for p in sch.get_producers(conv) if sch.get(p).name_hint == "conv_pad"]
    return bool(pads) and extents(sch, sch.get_loops(conv)[2:3]) == [1] and \
        int(sch.get(pads[0]).writes[0].source.shape[2]) == 1


def pointwise_plane(sch: Schedule, conv) -> bool:
    """A 1x1, stride-1 conv reading the unpadded input whose H*W plane is a multiple of 8
    (lower_nn keeps its rows unpadded then): the plane is contiguous in input and output, so
    it is tiled as one flattened loop (a GEMM [M, C] x [C, H*W])."""
    n, m, h, w, rc, kh, kw = sch.get_loops(conv)
    ext = extents(sch, [h, w, kh, kw])
    reads = sch.get(conv).reads
    return (ext[2] == ext[3] == 1 and (ext[0] * ext[1]) % 8 == 0
            and not any(sch.get(p).name_hint == "conv_pad" for p in sch.get_producers(conv))
            and any([int(d) for d in r.source.shape[2:]] == ext[:2] for r in reads
                    if len(r.source.shape) == 4))


@schedule_rule("ConvTranspose")
def conv_transpose_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    """The per-phase 1x1 convolution (lower_nn._conv_transpose_phases) register-tiled like a
    conv; the interleaving output copy (with the epilogue inlined) scheduled generically."""
    names = {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
    if "convT_phase" not in names:                 # the general form: a gather per tap
        _conv_transpose_general(sch, ctx)
        return
    inline_injective(sch)
    phase = sch.get_sblock("convT_phase")
    loops = sch.get_loops(phase)
    if len(loops) != 7:
        raise ValueError("not a 2-D kernel == stride transposed convolution")
    n, m, ph, pw, qh, qw, rc = loops
    register_tiled(sch, ctx, phase, [n], m, [ph, pw, qh], qw, [rc], own_consumers=False)
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if not sch.get(blk).name_hint.startswith("convT_phase"):
            schedule_injective(sch, blk)


def _conv_transpose_general(sch: Schedule, ctx: ScheduleContext) -> None:
    """The general ConvTranspose (a gather per tap): parallel over (batch, channel) only,
    the rows serial. The generic schedule fuses the output rows into the parallel loop too,
    and TVM 0.27's simplifier then merges the channel and the tap phase (o + pad) mod s of
    the fused index into one wrong weight index (batch 2, pads 1: wrong rows)."""
    inline_injective(sch)
    blk = sch.get_sblock("convT")
    loops = sch.get_loops(blk)
    n_m = loops[:2]
    outer = parallelize(sch, n_m, extents(sch, n_m), work=math.prod(extents(sch, loops)))
    for other in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(other).name_hint != "convT":
            try:
                sch.reverse_compute_at(other, outer)
            except Exception:
                schedule_injective(sch, other)


def register_tiled(sch: Schedule, ctx: ScheduleContext, blk, lead, m, rows, w, reduce_,
                   own_consumers: bool, plane: bool = False):
    """Tile a conv-like reduction block [lead, m, rows, w | reduce_] into MI x VW register
    tiles (conv_tile), parallel over (lead, m blocks, rows). With `own_consumers` the block's
    elementwise consumers (the fused epilogue) run on each finished tile, else the tile is
    written back from a local accumulator. Returns the fused parallel loop. (Chunking
    the reduction for L1 was measured to make no difference on resnet50's 1024-2048-channel
    layers, so there is none.)"""
    n_m, n_w = extents(sch, [m, w])
    depthwise = extents(sch, reduce_[:1]) == [1]          # one input channel per output
    lanes, registers = ctx.target.lanes(), ctx.target.vector_registers
    groups = _input_channels(sch, blk) // extents(sch, reduce_[:1])[0]
    mi, vw = conv_tile(n_m, n_w, lanes, registers, depthwise,
                       n_m // groups if groups > 1 and not depthwise else 0)
    packed = 0
    for p in sch.get_producers(blk):               # weights packed by the lowering for MI
        if sch.get(p).name_hint == "conv_wpack":
            mi = packed = extents(sch, sch.get_loops(p))[-1]     # its innermost loop: MI
    mi, vw = knob("conv.tile", (mi, vw),
                  lambda: conv_tiles(n_m, n_w, lanes, registers, depthwise, packed))
    mo, mi_l = sch.split(m, [None, mi])
    wo, wi = sch.split(w, [None, vw])
    inner = []
    pads = [p for p in sch.get_producers(blk) if sch.get(p).name_hint == "conv_pad"]
    ann = sch.get(blk).annotations
    if depthwise and pads and len(rows) == 1 and "edgecc.row_stride" in ann:
        # a task runs a band of rows: its padded input rows are copied once, not once per
        # output row that reads them (3x for 3x3 taps), within blocked.DW_SCRATCH_BYTES
        band = (extents(sch, rows)[0], int(ann["edgecc.row_stride"]),
                int(ann["edgecc.row_window"]),
                4 * mi * math.prod(int(d) for d in sch.get(pads[0]).writes[0].source.shape[3:]))
        r = knob("conv.rows", blocked.depthwise_rows(*band),
                 lambda: blocked.depthwise_row_choices(*band))
        ho, hi = sch.split(rows[0], [None, r])
        rows, inner = [ho], [hi]
    if pads and not plane and \
            extents(sch, reduce_[:1]) == [int(sch.get(pads[0]).writes[0].source.shape[1])]:
        # every channel block reads all input channels (group 1): a task runs several
        # blocks on its padded rows (pad_per_task copies them once per task), as many as
        # keep their weights within WEIGHTS_PER_TASK bytes
        block = 4 * mi * math.prod(extents(sch, reduce_))
        g = max(d for d in range(1, n_m // mi + 1)
                if (n_m // mi) % d == 0 and (d == 1 or d * block <= WEIGHTS_PER_TASK))
        g = knob("conv.blocks", g, lambda: task_blocks(n_m // mi, block))
        mo, mo_i = sch.split(mo, [None, g])
        inner = [mo_i]
    # reduction loop order (tuning only): the non-unit loops of rc, kh, kw permuted
    moving = [i for i, e in enumerate(extents(sch, reduce_)) if e != 1]
    order = knob("conv.order", tuple(moving), lambda: list(itertools.permutations(moving)))
    where = dict(zip(moving, order))
    reduce_ = [reduce_[where.get(i, i)] for i in range(len(reduce_))]
    sch.reorder(*lead, mo, *rows, *inner, wo, *reduce_, mi_l, wi)
    epilogue = list(sch.get_consumers(blk)) if own_consumers else []
    if not epilogue:
        epilogue = [sch.cache_write(blk, 0, "local")]
    else:
        sch.set_scope(blk, 0, "local")
    for e in epilogue:
        # a flattened plane's tile is not a box of (h, w): the epilogue runs per channel
        # block on the whole plane (region analysis would widen a tile to whole rows)
        sch.reverse_compute_at(e, mo if plane else wo)
    task = sch.fuse(*lead, mo, *rows)
    sch.parallel(task)
    if vw > 1:
        sch.vectorize(wi)
    if mi > 1:
        sch.unroll(mi_l)
    for e in epilogue:
        if vw > 1:
            try_(sch.vectorize, sch.get_loops(e)[-1])
    sch.decompose_reduction(blk, reduce_[0])
    return task


def _input_channels(sch: Schedule, blk) -> int:
    """C of the [N, C, H, W] activation a conv-like block reduces over (its first 4-D
    read that is not the weights, which come second)."""
    reads = [r.source for r in sch.get(blk).reads if len(r.source.shape) == 4]
    return int(reads[0].shape[1]) if reads else 0


def task_blocks(blocks: int, block_bytes: int) -> list[int]:
    """Channel blocks per task (G) for tuning: the divisors of `blocks`, those whose
    weights stay within WEIGHTS_PER_TASK first (largest first), then the larger ones."""
    divisors = [d for d in range(1, blocks + 1) if blocks % d == 0]
    fits = [d for d in divisors if d == 1 or d * block_bytes <= WEIGHTS_PER_TASK]
    return sorted(fits, reverse=True) + [d for d in divisors if d not in fits]
