"""Tuning records on disk: one MetaSchedule JSONDatabase per exact target.

Records live in `<cache_dir>/<target key>/` (database_workload.json +
database_tuning_record.json); the target key is the edgecc target name plus a digest of the
full LLVM target (Target.key), so records made for one target never apply to another. The
workload is the kernel's *unscheduled* PrimFunc (lower.kernel_prim_func), compared
structurally: it does not depend on kernel names or the bundle's --name. A build uses, per
kernel, the valid record with the lowest mean run time, ties broken by the trace text, so
builds from the same records are byte-identical.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgecc.backends.tvm.lower import kernel_prim_func
from edgecc.errors import UsageError, option
from edgecc.ir import Op
from edgecc.target import Target

NO_RESULT = 1e9           # MetaSchedule's run time for a failed candidate is 1e10


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgecc" / "tuning"


def check_dir(path: Path, what: str, create: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} '{path}' is a file, not a directory; give a directory "
                         f"for the tuning records")
    if not path.exists():
        if not create:
            raise UsageError(f"{what} '{path}' does not exist; give the directory that holds "
                             f"the tuning records (or {option('tune')} N to create it)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{what} '{path}' cannot be created: {e.strerror}") from None
    if create and not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} '{path}' is not writable; choose another --tuning-cache")
    return path



class TuningRecords:
    """The tuned schedules of one target: `schedule(op)` -> tuned PrimFunc or None."""

    def __init__(self, cache_dir: str | os.PathLike, target: Target):
        from tvm.s_tir import meta_schedule as ms
        self.cache_dir = Path(cache_dir)
        self.target = target
        self.path = self.cache_dir / target.key
        self.path.mkdir(parents=True, exist_ok=True)    # a no-op when reading records
        self.database = ms.database.JSONDatabase(work_dir=str(self.path))
        self.used: list[str] = []          # workload digests applied (for the report)

    def ranked(self, func) -> list:
        """The valid records of an unscheduled PrimFunc, best first: lowest mean run time,
        ties broken by the trace's JSON text."""
        mod = workload_mod(func)
        if not self.database.has_workload(mod):
            return []
        workload = self.database.commit_workload(mod)   # returns the stored entry
        return rank(self.database.get_top_k(workload, 1 << 30))

    def schedule(self, op: Op):
        """`op`'s kernel scheduled by its chosen record (no global symbol), or None."""
        func = kernel_prim_func(op, self.target)
        for record in self.ranked(func):
            sch = replay(func, record.trace)
            if sch is not None:
                self.used.append(digest(func))
                return sch.mod["main"]
        return None

    def commit(self, func, trace, run_secs: list[float], target) -> None:
        import tvm
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        workload = self.database.commit_workload(workload_mod(func))
        self.database.commit_tuning_record(ms.database.TuningRecord(
            trace, workload, [tvm.tirx.FloatImm("float32", s) for s in run_secs], target,
            ArgInfo.from_prim_func(func)))

    def __len__(self) -> int:
        return len(self.database)



def rank(records) -> list:
    return sorted((r for r in records if valid(r)),
                  key=lambda r: (mean_secs(r), str(r.trace.as_json())))


def replay(func, trace):
    """A Schedule of `func` with `trace` applied, or None when the trace does not replay."""
    from tvm.s_tir import Schedule
    sch = Schedule(workload_mod(func))
    try:
        trace.apply_to_schedule(sch, remove_postproc=False)
    except Exception:       # defensive: a record made by another TVM version
        return None
    return sch



# ---- helpers shared by the search --------------------------------------------------------------

def workload_mod(func):
    """A fresh IRModule {"main": func}: a deep copy, because a Schedule edits the statements
    of the module it is given in place (func itself would change)."""
    import tvm
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.ir.load_json(tvm.ir.save_json(mod))


def digest(func) -> str:
    import tvm
    return hashlib.sha256(tvm.ir.save_json(workload_mod(func)).encode()).hexdigest()[:16]


def tuning_target(target: Target, cores: int):
    import tvm
    spec = dict(target.tvm.export())
    spec["num-cores"] = cores           # MetaSchedule's parallel/unroll rules need it
    return tvm.target.Target(spec)


def cores() -> int:
    try:
        import psutil
        return psutil.cpu_count(logical=False) or 1
    except ImportError:
        return os.cpu_count() or 1


def valid(record) -> bool:
    secs = record.run_secs
    return bool(secs) and all(float(s) < NO_RESULT for s in secs)


def mean_secs(record) -> float:
    return float(np.mean([float(s) for s in record.run_secs]))


def last_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
