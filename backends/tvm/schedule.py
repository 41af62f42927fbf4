"""Schedules for lowered kernels (tvm.s_tir.Schedule on the PrimFunc of te.create_prim_func).

`schedule(func, anchor)` applies the rule registered for the kernel's anchor op kind (the first
non-elementwise op, e.g. "Conv"), else the generic CPU schedule:

  1. inline every intermediate injective stage (pads, bias adds, activations, views) into its
     consumer, so a Fused kernel becomes its reductions plus one output loop nest;
  2. per remaining block: fuse the leading spatial loops and mark them parallel (when the
     block does enough work), move the innermost spatial loop of a reduction inside the
     reduction loops and vectorize it when its extent is a multiple of the vector width;
  3. compute an injective output stage that follows a reduction inside the reduction's
     parallel loop (reverse_compute_at) for locality.

Only spatial loops are parallelized or vectorized, so every output element is computed by
one thread in a fixed order: results do not depend on the thread count.

Per-class rules (one file each, imported at the end of this module):
  schedule_conv.py   Conv (direct, pointwise, grouped, depthwise) and ConvTranspose with
                     kernel == stride: MI x VW register tiles sized from the target;
  schedule_pool.py   GlobalAveragePool: vectorized partial sums (rfactor);
  schedule_dense.py  Gemm, MatMul: K-vectorized matrix-vector, else MI x VW register tiles.
Rules size tiles for the target in scope (`with target.tvm:`, as build_kernels does;
default: the host): vector_lanes() / vector_registers(). A rule that raises falls back to
the generic schedule (recorded in FALLBACKS). Add one for an op class with

    @schedule_rule("Conv")
    def conv_schedule(sch: Schedule) -> None: ...
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable

from tvm.s_tir import Schedule

SCHEDULE_RULES: dict[str, Callable[[Schedule], None]] = {}
FALLBACKS: list[tuple[str, str]] = []   # (anchor, reason) when a rule did not fit (debugging)
_SCRATCH_FREE = contextvars.ContextVar("edgecc_scratch_free", default=False)


@contextlib.contextmanager
def scratch_free(on: bool = True):
    """Rules scheduled inside keep (almost) no scratch copies (padded input rows, packed
    weights): those stages are computed inline where they are read, except blocked convs,
    which copy one register tile's padded input (inline they ran 2.1-2.5x slower). For
    kernels at the memory plan's peak, whose scratch would raise the arena
    (bundle_layout.plan_bundle)."""
    token = _SCRATCH_FREE.set(on)
    try:
        yield
    finally:
        _SCRATCH_FREE.reset(token)


def scratch_free_active() -> bool:
    return _SCRATCH_FREE.get()


def staged(*names: str) -> tuple[str, ...]:
    """The stages a rule keeps as buffers of their own (`inline_injective(keep=...)`): `names`,
    or none inside scratch_free()."""
    return () if scratch_free_active() else names

PARALLEL_MIN_WORK = 1 << 14       # iterations below which threading costs more than it gains
PARALLEL_MIN_EXTENT = 64          # fuse leading spatial loops until this many parallel chunks
VECTOR_LANES = 8                  # generic schedule's f32 vector width (AVX2; 2 NEON regs)


def vector_lanes(target=None) -> int:
    """f32 lanes of one vector register of `target` (default: the Target in scope, else the
    host): AVX-512 16, AVX2 8, NEON/SSE 4 - from the target's triple, mcpu and mattr."""
    target = _target(target)
    if _is_arm(target):
        return 4
    attrs = target.attrs
    mcpu = str(attrs.get("mcpu", ""))
    mattr = {str(a) for a in attrs.get("mattr", [])}
    if mcpu == "x86-64-v4" or "avx512" in mcpu or "+avx512f" in mattr:
        return 16
    if mcpu == "x86-64-v3" or "+avx2" in mattr or mcpu in ("haswell", "skylake", "znver2"):
        return 8
    return 4


def vector_registers(target=None) -> int:
    """Vector registers of `target`: 32 on AVX-512 and AArch64, 16 on AVX2/SSE."""
    target = _target(target)
    return 32 if _is_arm(target) or vector_lanes(target) == 16 else 16


def cache_bytes(target=None) -> int:
    """Per-core L2 cache assumed for `target`: 1 MiB on AVX-512 (server cores), 256 KiB on
    AVX2/SSE, 512 KiB on AArch64 (Cortex-A7x). Working sets a kernel re-reads per tile are
    kept within it."""
    target = _target(target)
    if _is_arm(target):
        return 512 << 10
    return (1 << 20) if vector_lanes(target) == 16 else (256 << 10)


def _target(target=None):
    if target is None:
        import tvm
        target = tvm.target.Target.current(allow_none=True)
    if target is None:
        from edgecc.target import _host_name, make_target
        target = make_target(_host_name() or "x86_64").tvm
    return target


def _is_arm(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm"))


def schedule_rule(*kinds: str):
    def register(fn):
        for kind in kinds:
            SCHEDULE_RULES[kind] = fn
        return fn
    return register


def schedule(func, anchor: str | None = None):
    rule = SCHEDULE_RULES.get(anchor or "")
    if rule is not None:
        sch = Schedule(func)
        try:
            rule(sch)
            return sch.mod["main"]
        except Exception as e:  # the tuned rule does not fit this instance: generic schedule
            FALLBACKS.append((anchor, f"{type(e).__name__}: {str(e).strip()[:200]}"))
    sch = Schedule(func)
    generic_schedule(sch)
    return sch.mod["main"]


def generic_schedule(sch: Schedule) -> None:
    inline_injective(sch)
    root = sch.get_sblock("root")
    blocks = sch.get_child_blocks(root)
    outer_of: dict[str, object] = {}
    for blk in blocks:
        name = sch.get(blk).name_hint
        if _is_reduction(sch, blk):
            outer_of[name] = _schedule_reduction(sch, blk)
            if scratch_free_active() and outer_of[name] is not None:
                # consumers follow each vector of results, not each task's rows: the
                # reduction's buffer is then one vector (stack), not per-task scratch
                outer_of[name] = _above_reduction(sch, blk)
        else:
            producer = _reduction_producer(sch, blk)
            if producer is not None and outer_of.get(producer[0]) is not None:
                try:
                    sch.reverse_compute_at(blk, outer_of[producer[0]])
                    continue
                except Exception:      # not all consumers can move; schedule them standalone
                    pass
            _schedule_injective(sch, blk)


def inline_injective(sch: Schedule, keep=()) -> None:
    """compute_inline every non-output injective block not named in `keep`."""
    root = sch.get_sblock("root")
    changed = True
    while changed:
        changed = False
        outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)}
        for blk in sch.get_child_blocks(root):
            name = sch.get(blk).name_hint
            if name in outputs or name in keep or _is_reduction(sch, blk):
                continue
            try:
                sch.compute_inline(blk)
                changed = True
                break
            except Exception:         # e.g. a stage read by several consumers at offsets
                continue


def _iter_types(sch, blk):
    return [int(iv.iter_type) for iv in sch.get(blk).iter_vars]    # 0 spatial, 2 reduce


def _is_reduction(sch, blk) -> bool:
    return any(t != 0 for t in _iter_types(sch, blk))


def sole_reduction(sch: Schedule, what: str):
    """Inline the injective stages; return (block, loops, iter kinds) of the one reduction
    left, or raise ValueError (the caller's rule then falls back to the generic schedule)."""
    inline_injective(sch)
    root = sch.get_sblock("root")
    reductions = [b for b in sch.get_child_blocks(root) if _is_reduction(sch, b)]
    if len(reductions) != 1:
        raise ValueError(f"expected one {what} block")
    blk = reductions[0]
    return blk, sch.get_loops(blk), _iter_types(sch, blk)


def _above_reduction(sch, blk):
    """The innermost loop of `blk` outside its reduction loops."""
    loops = sch.get_loops(blk)
    nred = sum(1 for iv in sch.get(blk).iter_vars if int(iv.iter_type) != 0)
    from tvm import tirx
    vectorized = sch.get(loops[-1]).kind == tirx.ForKind.VECTORIZED
    return loops[len(loops) - nred - (2 if vectorized else 1)]


def _reduction_producer(sch, blk):
    prods = [p for p in sch.get_producers(blk) if _is_reduction(sch, p)]
    return (sch.get(prods[0]).name_hint,) if len(prods) == 1 else None


def _extents(sch, loops):
    out = []
    for lp in loops:
        ext = sch.get(lp).extent
        out.append(int(ext) if hasattr(ext, "value") or isinstance(ext, int) else None)
    return out


def _parallelize(sch, loops, extents, work=None):
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


def _schedule_injective(sch, blk, count_lanes: bool = False):
    """Parallel outer loops, vectorized innermost; `count_lanes`: the parallel threshold
    counts elements, not vector iterations (a copy feeding a parallel kernel: each thread
    then finds its part of the copy in its own cache)."""
    loops = sch.get_loops(blk)
    if not loops:
        return
    ext = _extents(sch, loops)
    inner = None
    if len(loops) > 1 and ext[-1] % VECTOR_LANES == 0:
        inner = loops[-1]
    outer = _parallelize(sch, loops[:-1] if inner is not None else loops,
                         ext[:-1] if inner is not None else ext,
                         math.prod(ext) if count_lanes else None)
    if inner is not None:
        _, vec = sch.split(inner, [None, VECTOR_LANES])
        _try(sch.vectorize, vec)
    return outer


def _schedule_reduction(sch, blk):
    loops = sch.get_loops(blk)
    kinds = _iter_types(sch, blk)
    if len(loops) != len(kinds):        # not the plain loop nest of a te.compute
        return None
    spatial = [lp for lp, k in zip(loops, kinds) if k == 0]
    reduce_ = [lp for lp, k in zip(loops, kinds) if k != 0]
    if not spatial:
        return None
    ext = _extents(sch, spatial)
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
    for e in _extents(sch, sch.get_loops(blk)):
        work *= e
    outer = _parallelize(sch, par_loops, par_ext, work)
    if vec is not None:
        _try(sch.vectorize, vec)
    return outer


def _try(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass


@schedule_rule("LSTM")
def lstm_schedule(sch: Schedule) -> None:
    """Keep every per-step state (lstm_h*/lstm_c*) and product materialized: inlining them
    would recompute the whole recurrence at every use. Blocks are scheduled one by one."""
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if _is_reduction(sch, blk):
            _schedule_reduction(sch, blk)
        else:
            _schedule_injective(sch, blk)


# per-class rules register themselves with @schedule_rule on import
from . import schedule_conv, schedule_dense, schedule_pool  # noqa: E402,F401
