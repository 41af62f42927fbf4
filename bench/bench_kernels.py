"""Per-kernel benchmark: where a model's time goes in its compiled TVM kernels.

    python bench/bench_kernels.py [--models squeezenet,ppocr_cls] [--threads 2] [--top 15]
                                  [--generic] [-o FILE]

Per model (zoo inputs, -O3 pipeline): compiles the kernels for the host (backends/tvm_build),
times every distinct kernel with TVM's runtime on random inputs (best of a few short batches,
per call, times the number of launches in the graph), counts its FLOPs (edgecc.ops.count_flops)
and reports GFLOP/s and % of the sgemm peak (numpy 2048^2 fp32 matmul on all cores, measured
in the same run before and after, the best kept, scaled by threads / cores) and of the vector
FMA peak (common.fma_peak_gflops: what the CPU's widest FMAs can do with that many threads;
OpenBLAS may not reach it). Rows are sorted by share of the model's kernel time.
`--generic` also times each kernel built with the generic schedule (no per-class rule),
interleaved with the default one, and reports the speedup of the rule.
The in-process TVM thread pool is very sensitive to other load on this 2-core VM: --threads 1
gives the stable per-kernel numbers (the bundle's own runtime is measured by bench_latency).
Writes bench/results/kernels.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kernels.json"
DEFAULT_MODELS = ("squeezenet", "ppocr_cls", "ppocr_det", "shufflenet", "resnet50")
BATCH_SECONDS = 0.05


def sgemm_gflops(n: int = 2048, tries: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def model_graph(name: str):
    from edgecc import zoo
    from edgecc.onnx_import import import_onnx
    from edgecc.pass_manager import PassManager, pipeline
    path = zoo.materialize(name)
    return PassManager(pipeline(3), target=common.host()).run(
        import_onnx(str(path), zoo.default_input_shapes(name)))


def _np_dtype(short):
    from edgecc.dtypes import dtype_to_tvm
    return dtype_to_tvm(short)


def compile_kernels(graph, generic: bool = False):
    """(calls, {func: (None, op)}, executable) for the host; `generic` disables every
    per-class rule."""
    from edgecc.backends.tvm import primitives
    from edgecc.backends.tvm.build import KernelSet
    saved = dict(primitives.SCHEDULE_RULES)
    if generic:
        primitives.SCHEDULE_RULES.clear()
    try:
        kernels = KernelSet(graph, common.host())
    finally:
        primitives.SCHEDULE_RULES.update(saved)
    funcs = {k.func: (None, k.op) for k in kernels.functions()}
    return kernels.calls(), funcs, kernels.runtime_module()


def kernel_runner(executable, call):
    """A no-argument callable running `call`'s kernel once on random operands."""
    import tvm
    dev = tvm.cpu(0)
    rng = np.random.default_rng(0)
    args = []
    for a in call.args:
        dt = _np_dtype(a.dtype)
        if a.role == "output":
            args.append(tvm.runtime.empty(a.shape, dt, dev))
        elif np.issubdtype(np.dtype(dt), np.floating):
            args.append(tvm.runtime.tensor(rng.standard_normal(a.shape).astype(dt), dev))
        else:
            args.append(tvm.runtime.tensor(np.zeros(a.shape, dt), dev))
    fn = executable[call.func]
    return lambda: fn(*args)


def per_call_seconds(fns: dict, rounds: int = 5) -> dict:
    """Best per-call time of each fn over `rounds` interleaved short batches."""
    sizes = {}
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        sizes[k] = max(1, min(2000, int(BATCH_SECONDS / max(time.perf_counter() - t0, 1e-7))))
    best = {k: float("inf") for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            n = sizes[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fns[k]()
            best[k] = min(best[k], (time.perf_counter() - t0) / n)
    return best


def bench_model(name: str, peak: float, generic: bool) -> dict:
    from edgecc.backends.tvm.lower import anchor_kind
    from edgecc.ops import count_flops
    g = model_graph(name)
    calls, funcs, exe = compile_kernels(g)
    base = compile_kernels(g, generic=True) if generic else None
    launches = Counter(c.func for c in calls if c.kind == "kernel")
    rows = []
    for func, (_, op) in funcs.items():
        call = next(c for c in calls if c.func == func)
        fns = {"default": kernel_runner(exe, call)}
        if base is not None:
            bcall = next(c for c in base[0] if c.index == call.index)
            fns["generic"] = kernel_runner(base[2], bcall)
        t = per_call_seconds(fns)
        flops = count_flops(op)
        gf = flops / t["default"] / 1e9
        row = {"func": func, "anchor": anchor_kind(op), "launches": launches[func],
               "us": t["default"] * 1e6, "total_us": t["default"] * 1e6 * launches[func],
               "flops": flops, "gflops": gf, "pct_peak": 100 * gf / peak,
               "shapes": [list(a.shape) for a in call.args]}
        if base is not None:
            row["generic_us"] = t["generic"] * 1e6
            row["speedup_vs_generic"] = t["generic"] / t["default"]
        rows.append(row)
    total = sum(r["total_us"] for r in rows)
    for r in rows:
        r["share"] = r["total_us"] / total
    rows.sort(key=lambda r: -r["total_us"])
    by_class: dict[str, dict] = {}
    for r in rows:
        c = by_class.setdefault(r["anchor"], {"us": 0.0, "flops": 0})
        c["us"] += r["total_us"]
        c["flops"] += r["flops"] * r["launches"]
    for c in by_class.values():
        c["gflops"] = c["flops"] / (c["us"] * 1e-6) / 1e9 if c["us"] else 0.0
        c["share"] = c["us"] / total
    return {"model": name, "total_us": total, "kernels": rows, "classes": by_class}


def print_model(res: dict, top: int) -> None:
    print(f"\n== {res['model']}: kernel time {res['total_us'] / 1e3:.2f} ms "
          f"({len(res['kernels'])} distinct kernels)")
    gen = any("generic_us" in r for r in res["kernels"])
    print(f"{'share':>6} {'us':>9} {'n':>3} {'GF/s':>7} {'%sgemm':>6} {'%fma':>5} "
          f"{'x gen' if gen else '':>6}  kernel  shapes")
    for r in res["kernels"][:top]:
        sp = f"{r['speedup_vs_generic']:6.2f}" if gen else ""
        fma = f"{r['pct_fma_peak']:5.1f}" if "pct_fma_peak" in r else "-"
        print(f"{100 * r['share']:5.1f}% {r['us']:9.1f} {r['launches']:3d} {r['gflops']:7.1f} "
              f"{r['pct_peak']:6.1f} {fma:>5} {sp:>6}  {r['func']}  "
              f"{r['shapes'][:2]}->{r['shapes'][-1]}")
    print("per class:", ", ".join(f"{k} {100 * v['share']:.0f}% {v['gflops']:.1f} GF/s"
                                  for k, v in sorted(res["classes"].items(),
                                                     key=lambda kv: -kv[1]["us"])))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--threads", type=int, default=2, help="TVM runtime threads")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--generic", action="store_true",
                    help="also time the generic schedule of every kernel (A/B)")
    ap.add_argument("-o", "--output", default=str(RESULTS))
    args = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    share = min(args.threads, os.cpu_count() or 1) / (os.cpu_count() or 1)
    peak = sgemm_gflops() * share
    fma = common.fma_peak_gflops(args.threads)
    results = []
    for name in [m for m in args.models.split(",") if m]:
        res = bench_model(name, peak, args.generic)
        for r in res["kernels"]:
            r["pct_fma_peak"] = 100 * r["gflops"] / fma
        print_model(res, args.top)
        results.append(res)
    peak = max(peak, sgemm_gflops() * share)
    print(f"\nsgemm peak (numpy 2048^2, best, x {share:.2f} for {args.threads} thread(s)): "
          f"{peak:.1f} GFLOP/s; vector FMA peak ({args.threads} thread(s)): {fma:.1f} GFLOP/s")
    out = {"threads": args.threads, "sgemm_gflops": peak, "fma_peak_gflops": fma,
           "models": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
