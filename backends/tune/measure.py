"""Measuring kernels in this process on this CPU: the in-process builder/runner MetaSchedule
uses, and Bench, which times candidate schedules against a reference in back-to-back pairs
(the machine's speed drifts ~2x over seconds; a pair's ratio does not)."""
from __future__ import annotations

import math

import numpy as np

from edgecc.target import Target

MARGIN = 0.03             # a tuned schedule must be this much faster than the default to count
# ---- measuring in this process --------------------------------------------------------------

_MODULES: dict[str, object] = {}         # built candidates awaiting the runner, by token
EVAL = dict(number=3, repeat=3, min_repeat_ms=20)
EVAL_PAIR = dict(number=1, repeat=1, min_repeat_ms=25)    # one sample of a pair
CONFIRM_ROUNDS = 7        # pairs per final contender


def in_process_measurers():
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
                    args = [random_tensor(a.as_json()) for a in inp.args_info]
                    secs = time_module(module, args)
                    futures.append(LocalRunnerFuture(res=secs, error_message=None))
                except Exception as e:
                    futures.append(LocalRunnerFuture(res=None,
                                                     error_message=f"{type(e).__name__}: {e}"))
            return futures

    return Builder(), Runner()


def random_tensor(info):
    import tvm
    _, dtype, shape = info
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, [int(s) for s in shape]).astype(str(dtype))
    return tvm.runtime.tensor(a, tvm.cpu(0))


def time_module(module, args, how=None) -> list[float]:
    import tvm
    ev = module.time_evaluator(module.entry_name, tvm.cpu(0), **(how or EVAL))
    return [float(t) for t in ev(*args).results]



class Bench:
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
        return [random_tensor(a) for a in self.info]

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
                    secs += time_module(m, self.args, EVAL_PAIR)
                    ref += time_module(self.reference, self.args, EVAL_PAIR)
                else:
                    ref += time_module(self.reference, self.args, EVAL_PAIR)
                    secs += time_module(m, self.args, EVAL_PAIR)
        return out

    def confirm(self, contenders):
        """(reference seconds, winner or None, winner seconds): the contenders timed again
        against the reference (their search timings favour the luckiest); the fastest wins
        when its mean is MARGIN below the reference's over the same pairs."""
        if not contenders:
            return time_module(self.reference, self.args, EVAL), None, []
        timed = self.paired([self._build(s) for s in contenders], CONFIRM_ROUNDS)
        ratios = [np.mean(secs) / np.mean(ref) for ref, secs in timed]
        i = int(np.argmin(ratios))
        ref, secs = timed[i]
        if ratios[i] < 1 - MARGIN:
            return ref, contenders[i], secs
        return ref, None, []



def gflops(flops: int, secs: float) -> float:
    return flops / secs / 1e9 if 0 < secs < math.inf else 0.0
