"""Tuning the kernels that carry a graph's FLOPs: which kernels, then per kernel a search
over the knobs of edgecc's own schedule rule, MetaSchedule with the trials left (where it can
win), and a confirmation of the winner against the default (see backends/tune/__init__.py)."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.backends.tune.arena_guard import ArenaGuard
from edgecc.backends.tune.measure import MARGIN, Bench, gflops
from edgecc.backends.tune.metaschedule import (MS_MIN_TRIALS, SEED, cpu_tensor_intrinsics,
                                               metaschedule_for, search)
from edgecc.backends.tune.records import (TuningRecords, check_dir, cores, default_cache_dir,
                                          last_line, replay, tuning_target, workload_mod)
from edgecc.backends.tvm.build import KernelSet
from edgecc.backends.tvm.lower import anchor_kind, kernel_prim_func
from edgecc.errors import UsageError, option
from edgecc.ir import Graph, Op
from edgecc.target import Target

COVERAGE = 0.8            # tune the biggest kernels until they hold this share of the FLOPs
MIN_TRIALS = 8            # fewer trials than this rarely beat the default schedule
KNOB_FIRST = 8            # knob candidates tried before MetaSchedule gets a kernel's other trials
SEARCH_ROUNDS = 3         # pairs per knob candidate


@dataclass
class KernelChoice:
    name: str                 # the kernel's function name (plan_kernels)
    op: Op
    flops: int                # per inference (all launches)
    share: float              # of the graph's kernel FLOPs
    launch_flops: int = 0     # one launch
    trials: int = 0
    indices: tuple[int, ...] = ()    # the graph.ops it runs


def choose_kernels(graph: Graph, target: Target, trials: int,
                   coverage: float = COVERAGE) -> list[KernelChoice]:
    """The biggest distinct kernels covering `coverage` of the FLOPs, with their trials."""
    from edgecc.ops import count_flops
    kernels = KernelSet(graph, target)
    calls = kernels.calls()
    funcs = {k.func: (None, k.op) for k in kernels.functions()}
    flops: dict[str, int] = {}
    for call in calls:
        if call.kind == "kernel":
            flops[call.func] = flops.get(call.func, 0) + count_flops(graph.ops[call.index])
    total = sum(flops.values())
    if total == 0:
        return []
    ranked = sorted(flops.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen, covered = [], 0
    for name, f in ranked:
        if covered >= coverage * total or f == 0:
            break
        op = funcs[name][1]
        indices = tuple(c.index for c in calls if c.func == name)
        chosen.append(KernelChoice(name, op, f, f / total, count_flops(op), indices=indices))
        covered += f
    # trials proportional to FLOPs, at least MIN_TRIALS each; drop the tail the budget misses
    while chosen:
        weight = sum(c.flops for c in chosen)
        for c in chosen:
            c.trials = int(trials * c.flops / weight)
        if all(c.trials >= min(MIN_TRIALS, trials) for c in chosen) or len(chosen) == 1:
            break
        chosen.pop()
    if chosen:
        chosen[0].trials += trials - sum(c.trials for c in chosen)   # rounding remainder
    return chosen



def tune_kernels(graph: Graph, target: Target, trials: int,
                 cache_dir: str | os.PathLike | None = None, progress=None) -> TuningRecords:
    """Tune the kernels of `graph` that carry COVERAGE of its FLOPs with `trials` trials in
    all (knob candidates of the default rule first, then MetaSchedule), measured on this
    CPU; commit the winners to the cache; return the records. One progress line per kernel:
    name, FLOPs share, trials, GFLOP/s default -> tuned, what was chosen."""
    if not target.runs_here():
        raise UsageError(
            f"{option('tune')} measures kernels on this machine, which cannot run {target.name} code. "
            f"Tune on the device through TVM RPC (see the README section 'Tuning for a "
            f"device'), then build with {option('tuning_cache')} <dir of the records>")
    cache = check_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                       option("tuning_cache"), create=True)
    try:
        import psutil  # noqa: F401  (MetaSchedule counts cores with it)
    except ImportError:
        raise UsageError(f"{option('tune')} needs the psutil package: pip install psutil") from None
    records = TuningRecords(cache, target)
    out = progress or sys.stderr
    choices = choose_kernels(graph, target, trials)
    print(f"edgecc: tuning {len(choices)} kernel(s) with {trials} trials for "
          f"{target.describe()}; records in {records.path}", file=out, flush=True)
    peak = ArenaGuard(graph, target)
    for c in choices:
        func = kernel_prim_func(c.op, target)
        if records.ranked(func):
            print(f"  {c.name:32s} {100 * c.share:5.1f}% FLOPs  cached record", file=out,
                  flush=True)
            continue
        start = time.perf_counter()
        verdict, note, before, after = _tune_kernel(c, func, target, records, peak)
        print(f"  {c.name:32s} {100 * c.share:5.1f}% FLOPs  {c.trials:4d} trials  "
              f"{before:6.1f} -> {after:6.1f} GFLOP/s  ({verdict}; {note or 'no knobs'}; "
              f"{time.perf_counter() - start:.0f} s)", file=out, flush=True)
    return records



def _tune_kernel(c: KernelChoice, func, target: Target, records: TuningRecords,
                 peak: ArenaGuard):
    """Search one kernel (knobs, then MetaSchedule), commit its records; returns (verdict,
    note, GFLOP/s of the default, GFLOP/s of what the build will use)."""
    default, knobs = traced(func, c.op, target)
    bench = Bench(func, target, default, peak.guard(c.indices, default))
    # 1. the default rule's own knobs (tile sizes ...), one candidate per trial: the
    # KNOB_FIRST most promising when MetaSchedule gets enough of the rest, else all
    tunable = any(len(choices) > 1 for _, choices in knobs.values())
    with_ms = metaschedule_for(knobs)
    first = KNOB_FIRST if with_ms and c.trials - KNOB_FIRST >= MS_MIN_TRIALS else c.trials
    best, used = knob_search(bench, func, c.op, knobs, first)
    contenders = [("knobs", best[1])] if best is not None else []
    # 2. MetaSchedule with what is left, for kernel classes where it can win
    ms_trials, ms_note = c.trials - used, ""
    if with_ms and ms_trials > 0 and (ms_trials >= MS_MIN_TRIALS or not tunable):
        try:
            found = search(func, target, ms_trials, c.name)
            tuned = next((s for s in (replay(func, r.trace) for r in found) if s is not None),
                         None)
            ms_note = f"MetaSchedule {ms_trials} trials"
            if tuned is not None and not bench.fits(tuned):
                ms_note += " (its best has scratch at the arena's peak)"
            elif tuned is not None and bench.agrees(bench.build(tuned)):
                contenders.append(("MetaSchedule", tuned))
        except Exception as e:          # MetaSchedule cannot handle this workload
            ms_note = f"search failed: {type(e).__name__}: {last_line(e)}"
    # 3. the default and the contenders timed again, in pairs; the default schedule is a
    # record too, and a contender only when MARGIN faster than it
    ms_target = tuning_target(target, cores())
    default_secs, winner, winner_secs = bench.confirm([s for _, s in contenders])
    records.commit(func, default.trace, default_secs, ms_target)
    if winner is not None:
        records.commit(func, winner.trace, winner_secs, ms_target)
        verdict = "tuned: " + next(w for w, s in contenders if s is winner)
    elif contenders:
        verdict = f"the default schedule stays: not {100 * MARGIN:.0f}% faster"
    else:
        verdict = "the default schedule stays: no faster candidate"
    kept = best is not None and winner is best[1]
    peak_note = f"{bench.rejected} with scratch at the arena's peak" if bench.rejected else ""
    note = "; ".join(n for n in (knob_note(knobs, best[0] if kept else {}, used), peak_note,
                                 ms_note) if n)
    before = gflops(c.launch_flops, float(np.mean(default_secs)))
    after = gflops(c.launch_flops, float(np.mean(winner_secs))) if winner else before
    return verdict, note, before, after



def traced(func, op: Op, target: Target, values: dict | None = None):
    """(Schedule, knobs): edgecc's default rule applied to the workload with the knob
    `values` overridden, as a traced Schedule (its trace is a record), and the knobs the
    rule consulted {name: (default, choices)}. Without overrides, a rule that does not fit
    falls back to the generic schedule as in tvm_schedule.schedule (no knobs); with
    overrides it raises."""
    from tvm.s_tir import Schedule

    from edgecc.backends.tvm.knobs import overrides
    from edgecc.backends.tvm.primitives import (SCHEDULE_RULES, ScheduleContext,
                                                generic_schedule)
    ctx = ScheduleContext(target)
    rule = SCHEDULE_RULES.get(anchor_kind(op))
    if rule is not None:
        sch = Schedule(workload_mod(func))
        try:
            with overrides(values) as knobs:
                rule(sch, ctx)
            return sch, knobs
        except Exception:
            if values:
                raise
    sch = Schedule(workload_mod(func))
    generic_schedule(sch, ctx)
    return sch, {}



def knob_search(bench: Bench, func, op: Op, knobs: dict, budget: int):
    """Coordinate search over the default rule's knobs: per knob, fewest choices first (a
    binary knob is settled in one trial and can matter most: computing the padded input
    per task or at once measured 3.3x on shufflenet's group conv), its choices in the
    rule's order with the other knobs at their best so far; each candidate built, checked
    against the default's results and timed in pairs with the default; the fastest becomes
    the base for the next knob. Returns ((values, Schedule, ratio to the default) of the
    best candidate or None, candidates measured)."""
    best = None
    seen = knobs                 # the knobs (and their choices) with the best values so far
    used = 0
    names = sorted(knobs, key=lambda n: len(knobs[n][1]))
    for i, name in enumerate(names):
        rest = budget - used
        if rest <= 0:
            break
        if name not in seen:
            continue
        # later knobs keep up to half of what is left
        later = sum(len(seen[n][1]) - 1 for n in names[i + 1:] if n in seen)
        share = rest - min(rest // 2, later)
        values = best[0] if best is not None else {}
        batch = []
        for candidate in seen[name][1]:
            if len(batch) >= share:
                break
            if candidate == values.get(name, seen[name][0]):
                continue
            trial = {**values, name: candidate}
            try:
                sch, trial_knobs = traced(func, op, bench.target, trial)
                module = bench.build(sch)
            except Exception:           # the rule cannot use this value on this kernel
                continue
            used += 1
            if bench.agrees(module):
                batch.append((trial, sch, trial_knobs, module))
        if not batch:
            continue
        timed = bench.paired([m for *_, m in batch], SEARCH_ROUNDS)
        for (trial, sch, trial_knobs, _), (ref, secs) in zip(batch, timed):
            ratio = float(np.mean(secs) / np.mean(ref))
            if ratio < (best[2] if best is not None else 1.0):
                best, seen = (trial, sch, ratio), trial_knobs
    return best, used



def knob_note(knobs: dict, values: dict, used: int) -> str:
    """'conv.tile (16, 16) -> (8, 16), 12 knob candidates' for the knobs of the kept
    candidate `values`, else the knobs searched with their defaults."""
    changed = [f"{n} {knobs[n][0]} -> {v}" for n, v in values.items() if v != knobs[n][0]]
    tunable = [f"{n} {d}" for n, (d, choices) in knobs.items() if len(choices) > 1]
    if not tunable:
        return ""
    return f"{', '.join(changed or tunable)}, {used} knob candidate{'s' * (used != 1)}"


def device_tuning_tasks(graph: Graph, target: Target, cache_dir: str | os.PathLike,
                        num_cores: int, coverage: float = COVERAGE):
    """MetaSchedule TuneContexts of the kernels worth tuning, for tuning on a device through
    RPC, and the directory their JSONDatabase must live in for edgecc to find it."""
    from tvm.s_tir import meta_schedule as ms

    cpu_tensor_intrinsics()
    tasks = [ms.TuneContext(mod=workload_mod(kernel_prim_func(c.op, target)),
                            target=tuning_target(target, num_cores),
                            space_generator="post-order-apply", search_strategy="evolutionary",
                            task_name=c.name, rand_state=SEED).clone()
             for c in choose_kernels(graph, target, 1 << 20, coverage)]   # no budget cut
    path = check_dir(Path(cache_dir), "cache dir", create=True) / target.key
    path.mkdir(exist_ok=True)
    return tasks, str(path)
