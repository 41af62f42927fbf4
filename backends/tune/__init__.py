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

from pathlib import Path

from edgecc.backends.tune.records import TuningRecords, check_dir, default_cache_dir
from edgecc.backends.tune.search import (COVERAGE, choose_kernels, device_tuning_tasks,
                                         tune_kernels)
from edgecc.errors import UsageError, option
from edgecc.ir import Graph
from edgecc.target import Target

__all__ = ["tuning_for", "tune_kernels", "TuningRecords", "device_tuning_tasks",
           "choose_kernels", "default_cache_dir", "target_key", "COVERAGE"]


def target_key(target: Target) -> str:
    """Directory name of `target`'s records (Target.key: name + digest of the LLVM target)."""
    return target.key


def tuning_for(graph: Graph, target: Target, trials: int, cache_dir: str | None,
               progress=None) -> TuningRecords | None:
    """The records a build should use: tune first when `trials` > 0; read `cache_dir`
    (or the default cache when it exists); None when there is nothing to apply."""
    if trials < 0:
        raise UsageError(f"{option('tune', trials)} must be a non-negative number of trials")
    if trials > 0:
        return tune_kernels(graph, target, trials, cache_dir, progress)
    if cache_dir is not None:
        path = check_dir(Path(cache_dir), "--tuning-cache", create=False)
    else:
        path = default_cache_dir()
    if not (path / target.key).is_dir():    # no records for this target
        return None
    return TuningRecords(path, target)
