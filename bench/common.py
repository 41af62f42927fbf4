"""Timing helpers shared by the benchmarks.

    res = interleaved({"edgecc": f, "onnxruntime": g}, rounds=7)   # -> Interleaved
    res.median["edgecc"], res.ratio("edgecc", "onnxruntime")

This VM's speed changes by ~2x every ~10 s (other tenants), so two runtimes timed one after the
other can differ only because they ran in different phases. `interleaved` therefore alternates
short batches of every candidate inside each round and keeps one per-call time per candidate
per round. The order is a fresh (seeded) permutation per round, and each batch starts after a
short idle gap and one untimed call: runtimes whose worker threads spin-wait after a run
(onnxruntime, TVM, ours) would otherwise slow down whichever candidate came right after them
(a device runs one model at a time), and the untimed call wakes the candidate's own sleeping
threads, as back-to-back inferences find them. Ratios are taken
per round (both batches ran within a fraction of a second of each other, so a phase change hits
both) and the median of those is reported; per-candidate medians are reported too.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BATCH_SECONDS = 0.15       # one batch of calls: well below the ~10 s phase of the VM
GAP_SECONDS = 0.08         # idle before each batch, so the previous runtime's spinners go to sleep:
                           # onnxruntime's pool keeps a core busy ~40 ms after its last run
                           # (measured: 12/8/12/5 ms of CPU in four 10 ms sleeps), ours ~2 ms


def calls_per_batch(fn: Callable[[], object], batch_seconds: float = BATCH_SECONDS) -> int:
    """How many calls of fn fill one batch (fn is called once as a warm-up)."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, min(1000, int(batch_seconds / max(dt, 1e-7))))


@dataclass
class Interleaved:
    """Per-call seconds of each candidate, one value per round."""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.samples.items()}

    @property
    def minimum(self) -> dict[str, float]:
        return {k: min(v) for k, v in self.samples.items()}

    def ratio(self, a: str, b: str) -> float:
        """Median over rounds of time(a) / time(b) measured in the same round."""
        return statistics.median(x / y for x, y in zip(self.samples[a], self.samples[b]))

    def spread(self, key: str) -> float:
        """(max - min) / median of a candidate's rounds: how noisy its numbers are."""
        v = self.samples[key]
        return (max(v) - min(v)) / statistics.median(v)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 7,
                batch_seconds: float = BATCH_SECONDS, budget_seconds: float | None = None,
                gap_seconds: float = GAP_SECONDS, seed: int = 0) -> Interleaved:
    """Time every fn in alternating batches; stop after `rounds` rounds, or earlier (but after
    at least 3 rounds) once `budget_seconds` of wall time is spent."""
    sizes = {k: calls_per_batch(f, batch_seconds) for k, f in fns.items()}
    res = Interleaved({k: [] for k in fns})
    rng = random.Random(seed)
    start = time.perf_counter()
    for r in range(rounds):
        for k in rng.sample(list(fns), len(fns)):
            f, n = fns[k], sizes[k]
            time.sleep(gap_seconds)
            f()                   # untimed: wakes the runtime's threads after the gap
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            res.samples[k].append((time.perf_counter() - t0) / n)
        if budget_seconds is not None and r >= 2 and time.perf_counter() - start > budget_seconds:
            break
    return res


def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def dir_bytes(path, patterns=("*",)) -> int:
    """Total size of the files in `path` matching any of the glob patterns (non-recursive)."""
    seen = set()
    for pat in patterns:
        seen.update(p for p in Path(path).glob(pat) if p.is_file())
    return sum(p.stat().st_size for p in seen)


def source_revision() -> str | None:
    """The edgecc git commit the numbers were measured at (+ "-dirty" with local changes)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version()}
    for mod in ("numpy", "onnx", "onnxruntime", "tvm"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:          # a missing baseline is recorded, not fatal
            info[mod] = f"unavailable: {type(e).__name__}"
    import edgecc
    from edgecc.target import host_x86_level
    info["edgecc"] = edgecc.__version__
    info["edgecc_revision"] = source_revision()
    if platform.machine().lower() in ("x86_64", "amd64"):      # what bundles are built for
        info["x86_level"] = host_x86_level()
        info["llvm_target"] = str(host().tvm)
    return info


_SGEMM = """
import sys, time, numpy as np
n = int(sys.argv[1]); a = np.random.default_rng(0).standard_normal((n, n), np.float32)
b = a.T.copy(); a @ b
best = float("inf"); end = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    t0 = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t0)
print(2 * n ** 3 / best / 1e9)
"""


def sgemm_peak_gflops(threads: int, n: int = 2048, seconds: float = 3.0) -> float:
    """Best GFLOP/s of numpy's fp32 n x n matmul with `threads` BLAS threads (a fresh
    process: BLAS reads its thread count at load)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", _SGEMM, str(n), str(seconds)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip())


_FMA_C = r'''
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef float vec __attribute__((vector_size(VBYTES)));
static double now(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec;
}
static volatile float sink;
/* 12 independent FMA chains in registers: enough to cover the FMA latency on every port */
#define STEP(x) x = x * b + c
static void *burn(void *arg) {
  long iters = *(long *)arg, i;
  vec b = (vec){0} + 0.999f, c = (vec){0} + 1e-6f;
  vec a0 = b, a1 = b + 1, a2 = b + 2, a3 = b + 3, a4 = b + 4, a5 = b + 5;
  vec a6 = b + 6, a7 = b + 7, a8 = b + 8, a9 = b + 9, a10 = b + 10, a11 = b + 11;
  for (i = 0; i < iters; ++i) {
    STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
    STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
  }
  sink += (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11)[0];
  return NULL;
}
int main(int argc, char **argv) {
  int threads = atoi(argv[1]), t, r;
  long iters = 20000000;
  double best = 1e30;
  pthread_t th[64];
  for (r = 0; r < 5; ++r) {
    double t0 = now();
    for (t = 0; t < threads; ++t) pthread_create(&th[t], NULL, burn, &iters);
    for (t = 0; t < threads; ++t) pthread_join(th[t], NULL);
    if (now() - t0 < best) best = now() - t0;
  }
  printf("%f\n", 2.0 * 12 * (VBYTES / 4) * (double)iters * threads / best / 1e9);
  return 0;
}
'''


def fma_peak_gflops(threads: int, vector_bytes: int | None = None) -> float:
    """f32 FMA throughput of this CPU with `threads` threads: independent vector FMA
    chains at the widest vector edgecc's kernels use here (64 bytes on AVX-512, 32 on AVX2),
    compiled with gcc -march=native. The ceiling a kernel can reach; numpy's sgemm peak can
    sit below it (OpenBLAS picks AVX2 kernels on some AVX-512 CPUs)."""
    if vector_bytes is None:
        vector_bytes = 4 * host().lanes()
    d = Path(tempfile.mkdtemp(prefix="edgecc-fma-"))
    try:
        (d / "fma.c").write_text(_FMA_C)
        subprocess.run(["gcc", "-O2", "-march=native", f"-mprefer-vector-width={8 * vector_bytes}",
                        f"-DVBYTES={vector_bytes}", "-o", str(d / "fma"), str(d / "fma.c"),
                        "-lpthread"], check=True, capture_output=True)
        out = subprocess.run([str(d / "fma"), str(threads)], capture_output=True, text=True,
                             check=True).stdout
        return float(out.strip())
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_json(path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def host():
    """The Target of this machine (x86_64 at its level), what the benchmarks build for."""
    from edgecc.target import host_target
    return host_target("x86_64")
