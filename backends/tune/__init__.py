"""Tuning of the kernels that carry the FLOPs (knobs of edgecc's own schedules, then
MetaSchedule), with records kept on disk.

    records = tune_kernels(graph, make_target("x86_64"), trials=200, cache_dir=None,
                           progress=sys.stderr)          # tunes, returns TuningRecords
    records = tuning_for(graph, target, trials, cache_dir, progress)   # what the driver calls
    lib = build_kernels(graph, target, workdir, tuning=records)

Which kernels: the distinct kernels of the graph ordered by FLOPs (count_flops of the op times
its launches); the top ones covering COVERAGE (80 %) of the graph's FLOPs are tuned, each with
a share of the trial budget proportional to its FLOPs (at least MIN_TRIALS). Kernels that
already have a record in the cache are not tuned again (delete the cache entry to re-tune).

The search, per kernel (one trial = one candidate schedule built and measured):
  1. knobs: the default rule's tile parameters (schedule_knobs: conv.tile MI x VW,
     conv.blocks, conv.order, blocked.tile T x NB, blocked.order, blocked.rows, dense.tile,
     dense.columns) have choices listed most promising first by the rule. Coordinate search:
     per knob, in the order the rule reads them, its choices with the other knobs at their
     best so far; each candidate is the rule traced with those overrides, checked against the
     default's results and timed in back-to-back pairs with the default (the machine's speed
     drifts ~2x over seconds; a pair's ratio does not). All trials go to the knobs when
     MetaSchedule is not used, else the KNOB_FIRST most promising.
  2. MetaSchedule with the trials left, when at least MS_MIN_TRIALS, except on blocked convs
     where it never won (_metaschedule_for has the measurements); kernels under the generic
     schedule (no knobs) get all their trials.
  3. the best of each search is timed again in pairs with the default (CONFIRM_ROUNDS; the
     search's numbers favour the luckiest candidate) and kept when MARGIN (3 %) faster.

Records: one MetaSchedule JSONDatabase per target under `<cache_dir>/<target key>/`
(database_workload.json + database_tuning_record.json). The target key is the edgecc target
name plus a digest of the full LLVM target (triple, mcpu, mattr), so records made for one
target never apply to another. The workload is the kernel's *unscheduled* PrimFunc
(tvm_lower.kernel_prim_func), compared structurally: it does not depend on kernel names or
the bundle's --name; knob choices never change it (only tile sizes that fit the workload as
lowered by default are offered). After a kernel's search, edgecc's default schedule (its
traced rule) is committed, and the winner of step 3 if any, each with its run times from
those pairs. A knob record is a trace like any other: builds replay it, no knob is read. A
build uses, per kernel, the valid record with the lowest mean run time, ties broken by the
trace text, so builds from the same records are byte-identical, and a kernel whose search
did not beat the default keeps the default. Records pin the schedule: after changing
edgecc's default schedules, re-tune (or delete the cache).

Default cache: $XDG_CACHE_HOME/edgecc/tuning, else ~/.cache/edgecc/tuning. Every build reads
it when it exists; `--tuning-cache DIR` reads (and with --tune writes) DIR instead.

Measuring happens in this process on this CPU (built with tvm.tirx.build, timed with TVM's
time_evaluator): tuning is possible only for the host's target (x86_64 on an x86_64 host).

Tuning for an arm64 device (TVM RPC; not exercised here - no device): MetaSchedule builds
the candidates on the host and measures them on the device.
  1. Device (aarch64 Linux, Python + apache-tvm 0.27, and g++ since it links what it gets):
        python -m tvm.exec.rpc_server --tracker <host>:9190 --key edge
     Build host: python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
  2. Build host: the kernels of the graph exactly as the build will see them (same model,
     --input-shape and -O level), tuned against the device:
        from edgecc.driver import Options, load_model, optimize
        from edgecc.target import make_target
        from edgecc.backends.tune import device_tuning_tasks
        from tvm.s_tir import meta_schedule as ms
        graph = optimize(load_model("model.onnx", {"x": (1, 3, 320, 320)})[0],
                         Options(target="arm64", opt_level=3))[0]
        tasks, db_dir = device_tuning_tasks(graph, make_target("arm64"), "records/",
                                            num_cores=4)          # the device's cores
        ms.tune_tasks(tasks=tasks, task_weights=[1.0] * len(tasks), work_dir="/tmp/ms",
                      max_trials_global=64 * len(tasks), num_trials_per_iter=16,
                      builder=ms.builder.LocalBuilder(timeout_sec=120),
                      runner=ms.runner.RPCRunner(ms.runner.RPCConfig(
                          tracker_host="<host>", tracker_port=9190, tracker_key="edge")),
                      database=ms.database.JSONDatabase(work_dir=db_dir))
     db_dir is records/<target key>/, the layout edgecc reads (same --mcpu/--mattr needed).
  3. Build with the records (copy records/ to any build machine):
        edgecc model.onnx --target arm64 --input-shape x=1,3,320,320 --tuning-cache records/
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.errors import UsageError
from edgecc.ir import Graph, Op

from edgecc.target import Target, make_target

COVERAGE = 0.8            # tune the biggest kernels until they hold this share of the FLOPs
MIN_TRIALS = 8            # fewer trials than this rarely beat the default schedule
MARGIN = 0.03             # a tuned schedule must be this much faster than the default to count
SEED = 0                  # MetaSchedule's random state (search order; records stay the choice)
KNOB_FIRST = 8            # knob candidates tried before MetaSchedule gets a kernel's other trials
MS_MIN_TRIALS = 32        # fewer rarely beat a rule, even a poor one (shufflenet's group conv
                          # as it was: 12 trials 1.47x slower, 20 trials 1.4x faster, 32 1.6-2.1x;
                          # its depthwise conv: 20 trials 1.0x, 32 1.45x)
_NO_RESULT = 1e9          # MetaSchedule's run time for a failed candidate is 1e10


# ---- where records live ---------------------------------------------------------------------

def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgecc" / "tuning"


def target_key(target: Target) -> str:
    """Directory name of `target`'s records: name + digest of the exact LLVM target."""
    digest = hashlib.sha256(str(target.tvm).encode()).hexdigest()[:16]
    return f"{target.name}-{digest}"


def _check_dir(path: Path, what: str, create: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} '{path}' is a file, not a directory; give a directory "
                         f"for the tuning records")
    if not path.exists():
        if not create:
            raise UsageError(f"{what} '{path}' does not exist; give the directory that holds "
                             f"the tuning records (or --tune N to create it)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{what} '{path}' cannot be created: {e.strerror}") from None
    if create and not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} '{path}' is not writable; choose another --tuning-cache")
    return path


# ---- applying records -----------------------------------------------------------------------

class TuningRecords:
    """The tuned schedules of one target: `schedule(op)` -> tuned PrimFunc or None."""

    def __init__(self, cache_dir: str | os.PathLike, target: Target):
        from tvm.s_tir import meta_schedule as ms
        self.cache_dir = Path(cache_dir)
        self.target = target
        self.path = self.cache_dir / target_key(target)
        self.path.mkdir(parents=True, exist_ok=True)    # a no-op when reading records
        self.database = ms.database.JSONDatabase(work_dir=str(self.path))
        self.used: list[str] = []          # workload digests applied (for the report)

    def ranked(self, func) -> list:
        """The valid records of an unscheduled PrimFunc, best first: lowest mean run time,
        ties broken by the trace's JSON text."""
        mod = _workload_mod(func)
        if not self.database.has_workload(mod):
            return []
        workload = self.database.commit_workload(mod)   # returns the stored entry
        return _rank(self.database.get_top_k(workload, 1 << 30))

    def schedule(self, op: Op):
        """`op`'s kernel scheduled by its chosen record (no global symbol), or None."""
        from edgecc.backends.tvm.lower import kernel_prim_func
        func = kernel_prim_func(op)
        for record in self.ranked(func):
            sch = _replay(func, record.trace)
            if sch is not None:
                self.used.append(_digest(func))
                return sch.mod["main"]
        return None

    def commit(self, func, trace, run_secs: list[float], target) -> None:
        import tvm
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        workload = self.database.commit_workload(_workload_mod(func))
        self.database.commit_tuning_record(ms.database.TuningRecord(
            trace, workload, [tvm.tirx.FloatImm("float32", s) for s in run_secs], target,
            ArgInfo.from_prim_func(func)))

    def __len__(self) -> int:
        return len(self.database)


def tuning_for(graph: Graph, target: Target, trials: int, cache_dir: str | None,
               progress=None) -> TuningRecords | None:
    """The records a build should use: tune first when `trials` > 0; read `cache_dir`
    (or the default cache when it exists); None when there is nothing to apply."""
    if trials < 0:
        raise UsageError("--tune must be a non-negative number of trials")
    if trials > 0:
        return tune_kernels(graph, target, trials, cache_dir, progress)
    if cache_dir is not None:
        path = _check_dir(Path(cache_dir), "--tuning-cache", create=False)
    else:
        path = default_cache_dir()
    if not (path / target_key(target)).is_dir():    # no records for this target
        return None
    return TuningRecords(path, target)


# ---- tuning ---------------------------------------------------------------------------------

@dataclass
class KernelChoice:
    name: str                 # the kernel's function name (plan_kernels)
    op: Op
    flops: int                # per inference (all launches)
    share: float              # of the graph's kernel FLOPs
    launch_flops: int = 0     # one launch
    trials: int = 0
    indices: tuple[int, ...] = ()    # the graph.ops it runs


def choose_kernels(graph: Graph, trials: int, coverage: float = COVERAGE) -> list[KernelChoice]:
    """The biggest distinct kernels covering `coverage` of the FLOPs, with their trials."""
    from edgecc.ops import count_flops

    from edgecc.backends.tvm.build import plan_kernels
    calls, funcs = plan_kernels(graph)
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


def tune_kernels(graph: Graph, target: Target | str, trials: int,
                 cache_dir: str | os.PathLike | None = None, progress=None) -> TuningRecords:
    """Tune the kernels of `graph` that carry COVERAGE of its FLOPs with `trials` trials in
    all (knob candidates of the default rule first, then MetaSchedule), measured on this
    CPU; commit the winners to the cache; return the records. One progress line per kernel:
    name, FLOPs share, trials, GFLOP/s default -> tuned, what was chosen."""
    target = make_target(target) if isinstance(target, str) else target
    if not target.is_host:
        raise UsageError(
            f"--tune measures kernels on this machine, which cannot run {target.name} code. "
            f"Tune on the device through TVM RPC (see the README section 'Tuning for a "
            f"device' / backends/tune.py), then build with --tuning-cache <dir of the "
            f"records>")
    cache = _check_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                       "--tuning-cache", create=True)
    try:
        import psutil  # noqa: F401  (MetaSchedule counts cores with it)
    except ImportError:
        raise UsageError("--tune needs the psutil package: pip install psutil") from None
    records = TuningRecords(cache, target)
    out = progress or sys.stderr
    choices = choose_kernels(graph, trials)
    print(f"edgecc: tuning {len(choices)} kernel(s) with {trials} trials for "
          f"{target.describe()}; records in {records.path}", file=out, flush=True)
    from edgecc.backends.tvm.lower import kernel_prim_func
    peak = _ArenaPeak(graph, target)
    for c in choices:
        func = kernel_prim_func(c.op)
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
                 peak: _ArenaPeak):
    """Search one kernel (knobs, then MetaSchedule), commit its records; returns (verdict,
    note, GFLOP/s of the default, GFLOP/s of what the build will use)."""
    with target.tvm:                    # default schedules read the target in scope
        default, knobs = _traced(func, c.op)
    bench = _Bench(func, target, default, peak.guard(c.indices, default))
    # 1. the default rule's own knobs (tile sizes ...), one candidate per trial: the
    # KNOB_FIRST most promising when MetaSchedule gets enough of the rest, else all
    tunable = any(len(choices) > 1 for _, choices in knobs.values())
    with_ms = _metaschedule_for(knobs)
    first = KNOB_FIRST if with_ms and c.trials - KNOB_FIRST >= MS_MIN_TRIALS else c.trials
    best, used = _knob_search(bench, func, c.op, knobs, first)
    contenders = [("knobs", best[1])] if best is not None else []
    # 2. MetaSchedule with what is left, for kernel classes where it can win
    ms_trials, ms_note = c.trials - used, ""
    if with_ms and ms_trials > 0 and (ms_trials >= MS_MIN_TRIALS or not tunable):
        try:
            found = _search(func, target, ms_trials, c.name)
            tuned = next((s for s in (_replay(func, r.trace) for r in found) if s is not None),
                         None)
            ms_note = f"MetaSchedule {ms_trials} trials"
            if tuned is not None and not bench.fits(tuned):
                ms_note += " (its best has scratch at the arena's peak)"
            elif tuned is not None and bench.agrees(bench.build(tuned)):
                contenders.append(("MetaSchedule", tuned))
        except Exception as e:          # MetaSchedule cannot handle this workload
            ms_note = f"search failed: {type(e).__name__}: {_last_line(e)}"
    # 3. the default and the contenders timed again, in pairs; the default schedule is a
    # record too, and a contender only when MARGIN faster than it
    tuning_target = _tuning_target(target, _cores())
    default_secs, winner, winner_secs = bench.confirm([s for _, s in contenders])
    records.commit(func, default.trace, default_secs, tuning_target)
    if winner is not None:
        records.commit(func, winner.trace, winner_secs, tuning_target)
        verdict = "tuned: " + next(w for w, s in contenders if s is winner)
    elif contenders:
        verdict = f"the default schedule stays: not {100 * MARGIN:.0f}% faster"
    else:
        verdict = "the default schedule stays: no faster candidate"
    kept = best is not None and winner is best[1]
    peak_note = f"{bench.rejected} with scratch at the arena's peak" if bench.rejected else ""
    note = "; ".join(n for n in (_knob_note(knobs, best[0] if kept else {}, used), peak_note,
                                 ms_note) if n)
    before = _gflops(c.launch_flops, float(np.mean(default_secs)))
    after = _gflops(c.launch_flops, float(np.mean(winner_secs))) if winner else before
    return verdict, note, before, after


def device_tuning_tasks(graph: Graph, target: Target | str, cache_dir: str | os.PathLike,
                        num_cores: int, coverage: float = COVERAGE):
    """MetaSchedule TuneContexts of the kernels worth tuning, for tuning on a device through
    RPC, and the directory their JSONDatabase must live in for edgecc to find it."""
    from tvm.s_tir import meta_schedule as ms

    from edgecc.backends.tvm.lower import kernel_prim_func
    target = make_target(target) if isinstance(target, str) else target
    _cpu_tensor_intrinsics()
    tasks = [ms.TuneContext(mod=_workload_mod(kernel_prim_func(c.op)),
                            target=_tuning_target(target, num_cores),
                            space_generator="post-order-apply", search_strategy="evolutionary",
                            task_name=c.name, rand_state=SEED).clone()
             for c in choose_kernels(graph, 1 << 20, coverage)]   # no budget cut
    path = _check_dir(Path(cache_dir), "cache dir", create=True) / target_key(target)
    path.mkdir(exist_ok=True)
    return tasks, str(path)


def _cpu_tensor_intrinsics() -> None:
    """Register only the CPU tensor intrinsics MetaSchedule's CPU rules use. Importing
    tvm.s_tir.tensor_intrin parses every intrinsic of every backend (CUDA, ROCm, Hexagon,
    ...) through TVMScript: 30-45 s on a loaded 2-core machine, against ~1 s for these."""
    import importlib
    import types

    import tvm.s_tir as s_tir
    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(s_tir.__path__[0], "tensor_intrin")]
        package.__package__ = name
        sys.modules[name] = package
        s_tir.tensor_intrin = package
    for sub in ("x86", "arm_cpu"):
        importlib.import_module(f"{name}.{sub}")


def _search(func, target: Target, trials: int, name: str):
    """Run MetaSchedule on one workload; its valid records, best first."""
    import logging

    from tvm.s_tir import meta_schedule as ms
    _cpu_tensor_intrinsics()
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    database = ms.database.MemoryDatabase()
    per_iter = min(trials, 16)
    builder, runner = _in_process_measurers()
    with tempfile.TemporaryDirectory(prefix="edgecc-tune-") as work:
        context = ms.TuneContext(
            mod=_workload_mod(func), target=_tuning_target(target, _cores()),
            space_generator="post-order-apply",
            search_strategy=ms.search_strategy.EvolutionarySearch(
                population_size=max(64, 8 * per_iter), init_min_unmeasured=per_iter),
            task_name=name, rand_state=SEED, num_threads=_cores(),
            logger=ms.logging.get_loggers_from_work_dir(work, [name])[0]).clone()
        ms.tune_tasks(tasks=[context], task_weights=[1.0], work_dir=work,
                      max_trials_global=trials, num_trials_per_iter=per_iter,
                      builder=builder, runner=runner,
                      database=database, cost_model=_cost_model(),
                      measure_callbacks=[ms.measure_callback.AddToDatabase(),
                                         ms.measure_callback.UpdateCostModel()],
                      task_scheduler="round-robin")
    return _rank(database.get_all_tuning_records())


def _rank(records) -> list:
    return sorted((r for r in records if _valid(r)),
                  key=lambda r: (_mean(r), str(r.trace.as_json())))


def _replay(func, trace):
    """A Schedule of `func` with `trace` applied, or None when the trace does not replay."""
    from tvm.s_tir import Schedule
    sch = Schedule(_workload_mod(func))
    try:
        trace.apply_to_schedule(sch, remove_postproc=False)
    except Exception:       # defensive: a record made by another TVM version
        return None
    return sch


# ---- measuring in this process --------------------------------------------------------------

_MODULES: dict[str, object] = {}         # built candidates awaiting the runner, by token
_EVAL = dict(number=3, repeat=3, min_repeat_ms=20)
_EVAL_PAIR = dict(number=1, repeat=1, min_repeat_ms=25)    # one sample of a pair
SEARCH_ROUNDS = 3         # pairs per knob candidate
CONFIRM_ROUNDS = 7        # pairs per final contender


def _in_process_measurers():
    """(builder, runner) for MetaSchedule that build and time candidates in this process.
    A candidate that crashed would take the compiler down with it; MetaSchedule's CPU
    schedules are bounds-safe (they only reorder the workload's loops)."""
    import tvm
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.runner import PyRunner
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
    from tvm.ir.utils import derived_object

    @derived_object
    class Builder(PyBuilder):
        """Compiles candidates with tvm.tirx.build here (no worker processes: on a loaded
        machine a worker's start-up alone exceeds MetaSchedule's build timeout)."""

        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                try:
                    token = f"edgecc-in-process:{len(_MODULES)}:{id(inp)}"
                    _MODULES[token] = tvm.tirx.build(inp.mod, target=inp.target)
                    results.append(BuilderResult(token, None))
                except Exception as e:   # an invalid candidate: report, keep searching
                    results.append(BuilderResult(None, f"{type(e).__name__}: {e}"))
            return results

    @derived_object
    class Runner(PyRunner):
        """Times each built candidate on random inputs with TVM's time_evaluator."""

        def run(self, runner_inputs):
            futures = []
            for inp in runner_inputs:
                module = _MODULES.pop(inp.artifact_path, None)
                try:
                    args = [_random_tensor(a.as_json()) for a in inp.args_info]
                    secs = _time(module, args)
                    futures.append(LocalRunnerFuture(res=secs, error_message=None))
                except Exception as e:
                    futures.append(LocalRunnerFuture(res=None,
                                                     error_message=f"{type(e).__name__}: {e}"))
            return futures

    return Builder(), Runner()


def _random_tensor(info):
    import tvm
    _, dtype, shape = info
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, [int(s) for s in shape]).astype(str(dtype))
    return tvm.runtime.tensor(a, tvm.cpu(0))


def _time(module, args, how=None) -> list[float]:
    import tvm
    ev = module.time_evaluator(module.entry_name, tvm.cpu(0), **(how or _EVAL))
    return [float(t) for t in ev(*args).results]


def _traced(func, op: Op, values: dict | None = None):
    """(Schedule, knobs): edgecc's default rule applied to the workload with the knob
    `values` overridden, as a traced Schedule (its trace is a record), and the knobs the
    rule consulted {name: (default, choices)}. Without overrides, a rule that does not fit
    falls back to the generic schedule as in tvm_schedule.schedule (no knobs); with
    overrides it raises."""
    from tvm.s_tir import Schedule

    from edgecc.backends.tvm.knobs import overrides
    from edgecc.backends.tvm.lower import anchor_kind
    from edgecc.backends.tvm.schedule import SCHEDULE_RULES, generic_schedule
    rule = SCHEDULE_RULES.get(anchor_kind(op))
    if rule is not None:
        sch = Schedule(_workload_mod(func))
        try:
            with overrides(values) as knobs:
                rule(sch)
            return sch, knobs
        except Exception:
            if values:
                raise
    sch = Schedule(_workload_mod(func))
    generic_schedule(sch)
    return sch, {}


def _knob_search(bench: _Bench, func, op: Op, knobs: dict, budget: int):
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
        for option in seen[name][1]:
            if len(batch) >= share:
                break
            if option == values.get(name, seen[name][0]):
                continue
            trial = {**values, name: option}
            try:
                with bench.target.tvm:
                    sch, trial_knobs = _traced(func, op, trial)
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


def _knob_note(knobs: dict, values: dict, used: int) -> str:
    """'conv.tile (16, 16) -> (8, 16), 12 knob candidates' for the knobs of the kept
    candidate `values`, else the knobs searched with their defaults."""
    changed = [f"{n} {knobs[n][0]} -> {v}" for n, v in values.items() if v != knobs[n][0]]
    tunable = [f"{n} {d}" for n, (d, choices) in knobs.items() if len(choices) > 1]
    if not tunable:
        return ""
    return f"{', '.join(changed or tunable)}, {used} knob candidate{'s' * (used != 1)}"


def _metaschedule_for(knobs: dict) -> bool:
    """Whether MetaSchedule gets the trials the knob search leaves. Not for blocked convs,
    which run near the machine's peak: 32 MetaSchedule trials were 1.3-2.2x slower than the
    default on resnet50's stem and 14x14 3x3 conv and squeezenet's 55x55 3x3 conv. For the
    others it can win: on shufflenet's NCHW group-4 1x1 conv 32-128 trials were 1.6-2.9x
    faster, on its depthwise conv 1.45-1.9x, on MatMul under the generic schedule 5-15x
    (and on squeezenet's NCHW 1x1 classifier conv 1.7x slower). With 17-51 trials after
    the knob search it never beat the knobs' winner on squeezenet's and shufflenet's NCHW
    convs (the group conv: 3.7x by knobs)."""
    return not any(name.startswith("blocked.") for name in knobs)


class _ArenaPeak:
    """The memory plan's view of kernel scratch (bundle_layout.plan_bundle): an op whose
    scratch on top of the activations live while it runs exceeds the activations' peak is
    built lean - with the least scratch, without its tuning record. A
    candidate whose scratch (e.g. the whole padded input instead of a few rows per task)
    would do that to an op its default schedule does not is rejected: records of such
    candidates made resnet50 2-3 % slower although they were 4-20 % faster alone."""

    def __init__(self, graph: Graph, target: Target):
        from edgecc.backends.bundle.layout import WORKSPACE_THREADS, _plan
        self.graph, self.target, self.threads = graph, target, WORKSPACE_THREADS
        self.activations = _plan(graph, {}, self.threads)

    def lean(self, indices, sch) -> set[int]:
        """The ops (of `indices`) the plan would build scratch-free with schedule `sch`."""
        import tvm

        from edgecc.backends.bundle.layout import scratch_at_peak
        from edgecc.backends.tvm.workspace import _lowered_host_module, scan_workspace
        host = _lowered_host_module(tvm.IRModule({"main": sch.mod["main"]}), self.target.tvm)
        ws = scan_workspace(host["main"].script(), "main")
        if not ws.top and not ws.per_task:
            return set()
        return set(scratch_at_peak(self.graph, self.activations, {i: ws for i in indices},
                                   self.threads))

    def guard(self, indices, default):
        """Whether a candidate Schedule of the kernel running the ops `indices` makes no
        more of them scratch-free than its `default` schedule."""
        baseline = self.lean(indices, default)
        return lambda sch: self.lean(indices, sch) <= baseline


class _Bench:
    """Builds schedules of one workload and times them against a reference schedule in
    adjacent pairs: the machine's speed drifts (~2x over seconds), so only the ratio of two
    back-to-back runs means something."""

    def __init__(self, func, target: Target, reference, fits=None):
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        self.target = target
        self.fits = fits
        self.rejected = 0              # candidates whose scratch does not fit
        self.info = [a.as_json() for a in ArgInfo.from_prim_func(func)]
        self.args = self._args()
        self.reference = self._build(reference)
        self.expected = self._run(self.reference)

    def build(self, sch):
        """A candidate's module; ValueError when its scratch does not `fit`."""
        if self.fits is not None and not self.fits(sch):
            self.rejected += 1
            raise ValueError("its scratch would make a kernel at the arena's peak "
                             "scratch-free")
        return self._build(sch)

    def _build(self, sch):
        import tvm
        return tvm.tirx.build(sch.mod, target=self.target.tvm)

    def _args(self):
        return [_random_tensor(a) for a in self.info]

    def _run(self, module) -> list[np.ndarray]:
        args = self._args()
        module(*args)
        return [a.numpy() for a in args]

    def agrees(self, module) -> bool:
        """Whether `module` computes what the reference computes (a candidate schedule that
        does not is never measured, whatever its speed)."""
        for got, want in zip(self._run(module), self.expected):
            scale = float(np.abs(want).max()) if want.size and want.dtype.kind == "f" else 0
            if not np.allclose(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1.0)):
                return False
        return True

    def paired(self, modules, rounds: int) -> list[tuple[list[float], list[float]]]:
        """Per module: (reference seconds, module seconds), `rounds` back-to-back pairs each,
        the order within a pair alternating."""
        out = [([], []) for _ in modules]
        for r in range(rounds):
            for i, m in enumerate(modules):
                ref, secs = out[i]
                if (r + i) % 2:
                    secs += _time(m, self.args, _EVAL_PAIR)
                    ref += _time(self.reference, self.args, _EVAL_PAIR)
                else:
                    ref += _time(self.reference, self.args, _EVAL_PAIR)
                    secs += _time(m, self.args, _EVAL_PAIR)
        return out

    def confirm(self, contenders):
        """(reference seconds, winner or None, winner seconds): the contenders timed again
        against the reference (their search timings favour the luckiest); the fastest wins
        when its mean is MARGIN below the reference's over the same pairs."""
        if not contenders:
            return _time(self.reference, self.args, _EVAL), None, []
        timed = self.paired([self._build(s) for s in contenders], CONFIRM_ROUNDS)
        ratios = [np.mean(secs) / np.mean(ref) for ref, secs in timed]
        i = int(np.argmin(ratios))
        ref, secs = timed[i]
        if ratios[i] < 1 - MARGIN:
            return ref, contenders[i], secs
        return ref, None, []


# ---- small helpers --------------------------------------------------------------------------

def _workload_mod(func):
    """A fresh IRModule {"main": func}: a deep copy, because a Schedule edits the statements
    of the module it is given in place (func itself would change)."""
    import tvm
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.ir.load_json(tvm.ir.save_json(mod))


def _digest(func) -> str:
    import tvm
    return hashlib.sha256(tvm.ir.save_json(_workload_mod(func)).encode()).hexdigest()[:16]


def _tuning_target(target: Target, cores: int):
    import tvm
    spec = dict(target.tvm.export())
    spec["num-cores"] = cores           # MetaSchedule's parallel/unroll rules need it
    return tvm.target.Target(spec)


def _cores() -> int:
    try:
        import psutil
        return psutil.cpu_count(logical=False) or 1
    except ImportError:
        return os.cpu_count() or 1


def _cost_model():
    try:
        import xgboost  # noqa: F401
        return "xgb"
    except ImportError:      # MetaSchedule's learned model needs xgboost; search at random
        return "random"


def _last_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _valid(record) -> bool:
    secs = record.run_secs
    return bool(secs) and all(float(s) < _NO_RESULT for s in secs)


def _mean(record) -> float:
    return float(np.mean([float(s) for s in record.run_secs]))


def _gflops(flops: int, secs: float) -> float:
    return flops / secs / 1e9 if 0 < secs < math.inf else 0.0
