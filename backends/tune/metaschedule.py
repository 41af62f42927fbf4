"""MetaSchedule: searching one kernel's schedule space (when edgecc's knobs are not enough),
and the tasks for tuning on an arm64 device through TVM RPC."""
from __future__ import annotations

import os
import sys
import tempfile

from edgecc.backends.tune.measure import in_process_measurers
from edgecc.backends.tune.records import cores, rank, tuning_target, workload_mod
from edgecc.target import Target

SEED = 0                  # MetaSchedule's random state (search order; records stay the choice)
MS_MIN_TRIALS = 32        # fewer rarely beat a rule, even a poor one (shufflenet's group conv
                          # as it was: 12 trials 1.47x slower, 20 trials 1.4x faster, 32 1.6-2.1x;
                          # its depthwise conv: 20 trials 1.0x, 32 1.45x)


def metaschedule_for(knobs: dict) -> bool:
    """Whether MetaSchedule gets the trials the knob search leaves. Not for blocked convs,
    which run near the machine's peak: 32 MetaSchedule trials were 1.3-2.2x slower than the
    default on resnet50's stem and 14x14 3x3 conv and squeezenet's 55x55 3x3 conv. For the
    others it can win: on shufflenet's NCHW group-4 1x1 conv 32-128 trials were 1.6-2.9x
    faster, on its depthwise conv 1.45-1.9x, on MatMul under the generic schedule 5-15x
    (and on squeezenet's NCHW 1x1 classifier conv 1.7x slower). With 17-51 trials after
    the knob search it never beat the knobs' winner on squeezenet's and shufflenet's NCHW
    convs (the group conv: 3.7x by knobs)."""
    return not any(name.startswith("blocked.") for name in knobs)



def cpu_tensor_intrinsics() -> None:
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



def search(func, target: Target, trials: int, name: str):
    """Run MetaSchedule on one workload; its valid records, best first."""
    import logging

    from tvm.s_tir import meta_schedule as ms
    cpu_tensor_intrinsics()
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    database = ms.database.MemoryDatabase()
    per_iter = min(trials, 16)
    builder, runner = in_process_measurers()
    with tempfile.TemporaryDirectory(prefix="edgecc-tune-") as work:
        context = ms.TuneContext(
            mod=workload_mod(func), target=tuning_target(target, cores()),
            space_generator="post-order-apply",
            search_strategy=ms.search_strategy.EvolutionarySearch(
                population_size=max(64, 8 * per_iter), init_min_unmeasured=per_iter),
            task_name=name, rand_state=SEED, num_threads=cores(),
            logger=ms.logging.get_loggers_from_work_dir(work, [name])[0]).clone()
        ms.tune_tasks(tasks=[context], task_weights=[1.0], work_dir=work,
                      max_trials_global=trials, num_trials_per_iter=per_iter,
                      builder=builder, runner=runner,
                      database=database, cost_model=cost_model(),
                      measure_callbacks=[ms.measure_callback.AddToDatabase(),
                                         ms.measure_callback.UpdateCostModel()],
                      task_scheduler="round-robin")
    return rank(database.get_all_tuning_records())



def cost_model():
    try:
        import xgboost  # noqa: F401
        return "xgb"
    except ImportError:      # MetaSchedule's learned model needs xgboost; search at random
        return "random"
