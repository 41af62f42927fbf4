"""Where a bundle's time goes, per step, at 1 and 2 threads (the deployed code, not TVM's
runtime): the bundle's `make profile` library times every kernel launch and copy.

    python bench/bench_profile.py [--models squeezenet] [--threads 1,2] [--runs 20] [--top 15]

Per model: builds the -O3 x86_64 bundle, loads lib<id>_profile.so (edgecc.backends.bundle.runner.load
with profile=True), runs it `--runs` times per thread count, alternating the thread counts
run by run (this VM's speed drifts), and prints the slowest steps: microseconds per run at
each thread count, the scaling from the first to the last, and the sum of the steps against
the measured wall time (the rest is the runtime's own overhead). Writes
bench/results/profile.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import edgecc  # noqa: E402
from edgecc import zoo  # noqa: E402
from edgecc.backends.bundle import runner  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "profile.json"


def profile_model(name: str, threads: list[int], runs: int, workdir: Path) -> dict:
    out = workdir / name
    edgecc.compile(str(zoo.materialize(name)), target="x86_64", opt_level=3,
                   outdir=str(out), input_shapes=zoo.default_input_shapes(name))
    b = runner.load(out, profile=True)
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.standard_normal(s.shape).astype(s.dtype) for s in b.inputs}
    steps = {t: None for t in threads}
    wall = {t: 0.0 for t in threads}
    for t in threads:                          # warm-up: thread pool, caches
        b.set_num_threads(t)
        b.run(feeds)
    for _ in range(runs):
        for t in threads:
            b.set_num_threads(t)
            b.reset_step_times()
            start = time.perf_counter()
            b.run(feeds)
            wall[t] += time.perf_counter() - start
            got = b.step_times()
            steps[t] = got if steps[t] is None else \
                [(w, a + s) for (w, a), (_, s) in zip(steps[t], got)]
    names = [w for w, _ in steps[threads[0]]]
    per_run = {t: [s / runs for _, s in steps[t]] for t in threads}
    return {"model": name, "threads": threads, "runs": runs,
            "wall_ms": {t: wall[t] / runs * 1e3 for t in threads},
            "steps_ms": {t: sum(per_run[t]) * 1e3 for t in threads},
            "steps": [{"step": w, "us": {t: per_run[t][i] * 1e6 for t in threads}}
                      for i, w in enumerate(names)]}


def print_model(res: dict, top: int) -> None:
    th = res["threads"]
    print(f"\n== {res['model']}: wall " + ", ".join(
        f"{res['wall_ms'][t]:.3f} ms at {t}" for t in th) + "; steps sum " + ", ".join(
        f"{res['steps_ms'][t]:.3f}" for t in th))
    print(f"{'step':48s}" + "".join(f"{f'{t} thr us':>11s}" for t in th) + "   scaling")
    rows = sorted(res["steps"], key=lambda r: -r["us"][th[0]])[:top]
    for r in rows:
        scale = r["us"][th[0]] / max(r["us"][th[-1]], 1e-9)
        print(f"{r['step'][:48]:48s}" + "".join(f"{r['us'][t]:11.1f}" for t in th)
              + f"   {scale:7.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="squeezenet")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("-o", default=str(RESULTS))
    args = ap.parse_args(argv)
    import tempfile
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "edgecc-bench-profile")
    threads = [int(t) for t in args.threads.split(",")]
    results = []
    for name in args.models.split(","):
        res = profile_model(name, threads, args.runs, workdir)
        print_model(res, args.top)
        results.append(res)
    common.write_json(args.o, {"machine": common.machine_info(),
                               "revision": common.source_revision(), "models": results})
    print(f"\nwrote {args.o}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
