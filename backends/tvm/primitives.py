"""What every schedule rule builds on: the rule registry, the context a rule runs in, and the
public scheduling primitives (tvm.s_tir.Schedule on the PrimFunc of te.create_prim_func).

    @schedule_rule("Conv")
    def conv_schedule(sch: Schedule, ctx: ScheduleContext) -> None: ...

`ctx.target` (compiler/target.py) is what tiles are sized by: `ctx.target.lanes()`,
`ctx.target.vector_registers`, `ctx.target.cache_bytes`. `ctx.lean`: keep (almost) no scratch
copies (padded input rows, packed weights): those stages are computed inline where they are
read, except blocked convs, which copy one register tile's padded input (inline they ran
2.1-2.5x slower). For kernels at the memory plan's peak, whose scratch would raise the arena
(bundle.program.plan_bundle).

The generic CPU schedule (generic_schedule):
  1. inline every intermediate injective stage (pads, bias adds, activations, views) into its
     consumer, so a Fused kernel becomes its reductions plus one output loop nest;
  2. per remaining block: fuse the leading spatial loops and mark them parallel (when the
     block does enough work), move the innermost spatial loop of a reduction inside the
     reduction loops and vectorize it when its extent is a multiple of the vector width;
  3. compute an injective output stage that follows a reduction inside the reduction's
     parallel loop (reverse_compute_at) for locality.
Only spatial loops are parallelized or vectorized, so every output element is computed by
one thread in a fixed order: results do not depend on the thread count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from tvm.s_tir import Schedule

from edgecc.target import Target


@dataclass(frozen=True)
class ScheduleContext:
    target: Target
    lean: bool = False          # scratch-free (see the module doc)

    def staged(self, *names: str) -> tuple[str, ...]:
        """The stages a rule keeps as buffers of their own (`inline_injective(keep=...)`):
        `names`, or none when lean."""
        return () if self.lean else names


SCHEDULE_RULES: dict[str, Callable[[Schedule, ScheduleContext], None]] = {}
FALLBACKS: list[tuple[str, str]] = []   # (anchor, reason) when a rule did not fit (debugging)
PARALLEL_MIN_WORK = 1 << 14       # iterations below which threading costs more than it gains
PARALLEL_MIN_EXTENT = 64          # fuse leading spatial loops until this many parallel chunks
VECTOR_LANES = 8                  # generic schedule's f32 vector width (AVX2; 2 NEON regs)


def schedule_rule(*kinds: str):
    def register(fn):
        for kind in kinds:
            SCHEDULE_RULES[kind] = fn
        return fn
    return register


def generic_schedule(sch: Schedule, ctx: "ScheduleContext | None" = None) -> None:
    inline_injective(sch)
    root = sch.get_sblock("root")
    blocks = sch.get_child_blocks(root)
    outer_of: dict[str, object] = {}
    for blk in blocks:
        name = sch.get(blk).name_hint
        if is_reduction(sch, blk):
            outer_of[name] = schedule_reduction(sch, blk)
            if ctx is not None and ctx.lean and outer_of[name] is not None:
                # consumers follow each vector of results, not each task's rows: the
                # reduction's buffer is then one vector (stack), not per-task scratch
                outer_of[name] = above_reduction(sch, blk)
        else:
            producer = reduction_producer(sch, blk)
            if producer is not None and outer_of.get(producer[0]) is not None:
                try:
                    sch.reverse_compute_at(blk, outer_of[producer[0]])
                    continue
                except Exception:      # not all consumers can move; schedule them standalone
                    pass
            schedule_injective(sch, blk)


# name prefix of the stages a lowering computes once into a buffer of their own (lower.py:
# expressions that inlining would repeat); never inlined
MATERIALIZED = "materialized"


def inline_injective(sch: Schedule, keep=()) -> None:
    """compute_inline every non-output injective block not named in `keep` (nor
    materialized)."""
    root = sch.get_sblock("root")
    changed = True
    while changed:
        changed = False
        outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)}
        for blk in sch.get_child_blocks(root):
            name = sch.get(blk).name_hint
            if name in outputs or name in keep or name.startswith(MATERIALIZED) or \
                    is_reduction(sch, blk):
                continue
            try:
                sch.compute_inline(blk)
                changed = True
                break
            except Exception:         # e.g. a stage read by several consumers at offsets
                continue


def iter_types(sch, blk):
    return [int(iv.iter_type) for iv in sch.get(blk).iter_vars]    # 0 spatial, 2 reduce


def is_reduction(sch, blk) -> bool:
    return any(t != 0 for t in iter_types(sch, blk))


def sole_reduction(sch: Schedule, what: str):
    """Inline the injective stages; return (block, loops, iter kinds) of the one reduction
    left, or raise ValueError (the caller's rule then falls back to the generic schedule)."""
    inline_injective(sch)
    root = sch.get_sblock("root")
    reductions = [b for b in sch.get_child_blocks(root) if is_reduction(sch, b)]
    if len(reductions) != 1:
        raise ValueError(f"expected one {what} block")
    blk = reductions[0]
    return blk, sch.get_loops(blk), iter_types(sch, blk)


def above_reduction(sch, blk):
    """The innermost loop of `blk` outside its reduction loops."""
    loops = sch.get_loops(blk)
    nred = sum(1 for iv in sch.get(blk).iter_vars if int(iv.iter_type) != 0)
    from tvm import tirx
    vectorized = sch.get(loops[-1]).kind == tirx.ForKind.VECTORIZED
    return loops[len(loops) - nred - (2 if vectorized else 1)]


def reduction_producer(sch, blk):
    prods = [p for p in sch.get_producers(blk) if is_reduction(sch, p)]
    return (sch.get(prods[0]).name_hint,) if len(prods) == 1 else None


def extents(sch, loops):
    out = []
    for lp in loops:
        ext = sch.get(lp).extent
        out.append(int(ext) if hasattr(ext, "value") or isinstance(ext, int) else None)
    return out


def parallelize(sch, loops, extents, work=None):
    """Fuse leading loops up to PARALLEL_MIN_EXTENT and mark parallel when the block does
    `work` iterations or more (default: the loops' product); returns the outer loop."""
    if work is None:
        work = 1
        for e in extents:
            work *= e
    if not loops or work < PARALLEL_MIN_WORK:
        return loops[0] if loops else None
    n, prod = 0, 1
    while n < len(loops) and prod < PARALLEL_MIN_EXTENT:
        prod *= extents[n]
        n += 1
    fused = sch.fuse(*loops[:n]) if n > 1 else loops[0]
    if prod > 1:
        sch.parallel(fused)
    return fused


def schedule_injective(sch, blk, count_lanes: bool = False):
    """Parallel outer loops, vectorized innermost; `count_lanes`: the parallel threshold
    counts elements, not vector iterations (a copy feeding a parallel kernel: each thread
    then finds its part of the copy in its own cache)."""
    loops = sch.get_loops(blk)
    if not loops:
        return
    ext = extents(sch, loops)
    inner = None
    if len(loops) > 1 and ext[-1] % VECTOR_LANES == 0:
        inner = loops[-1]
    outer = parallelize(sch, loops[:-1] if inner is not None else loops,
                         ext[:-1] if inner is not None else ext,
                         math.prod(ext) if count_lanes else None)
    if inner is not None:
        _, vec = sch.split(inner, [None, VECTOR_LANES])
        try_(sch.vectorize, vec)
    return outer


def schedule_reduction(sch, blk):
    loops = sch.get_loops(blk)
    kinds = iter_types(sch, blk)
    if len(loops) != len(kinds):        # not the plain loop nest of a te.compute
        return None
    spatial = [lp for lp, k in zip(loops, kinds) if k == 0]
    reduce_ = [lp for lp, k in zip(loops, kinds) if k != 0]
    if not spatial:
        return None
    ext = extents(sch, spatial)
    vec = None
    if len(spatial) > 1 and ext[-1] % VECTOR_LANES == 0:
        # innermost spatial loop -> [outer, lanes]; lanes go inside the reduction loops
        o, vec = sch.split(spatial[-1], [None, VECTOR_LANES])
        sch.reorder(*spatial[:-1], o, *reduce_, vec)
        spatial = spatial[:-1] + [o]
        ext = ext[:-1] + [ext[-1] // VECTOR_LANES]
    par_loops, par_ext = spatial, ext
    if vec is not None and len(spatial) > 1:
        par_loops, par_ext = spatial[:-1], ext[:-1]
    work = 1
    for e in extents(sch, sch.get_loops(blk)):
        work *= e
    outer = parallelize(sch, par_loops, par_ext, work)
    if vec is not None:
        try_(sch.vectorize, vec)
    return outer


def try_(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass
