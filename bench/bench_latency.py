"""Latency benchmark: edgecc x86_64 bundles vs onnxruntime and TVM's own ONNX path.

    python bench/bench_latency.py [--models a,b] [--threads 1,2] [--opt 1,2,3] [--repeat N]
                                  [--no-tvm] [--tvm-timeout S] [--budget S] [-o FILE]

Per model: builds the edgecc bundle (timed; sizes of its files on disk), builds the TVM module
(`bench/tvm_onnx.py`, in a child process under a time limit; a failure is recorded with its
reason), opens an onnxruntime session per thread count (ORT_ENABLE_ALL, intra-op threads = the
thread count, inter-op 1), checks every engine's outputs against onnxruntime, then times all of
them INTERLEAVED (bench/common.py: alternating ~0.15 s batches, rotated order, per-round ratios,
medians). Prints tables and writes bench/results/latency.json.

With several --opt levels, the models in OPT_MODELS get one bundle per level, timed in the same
rounds (the -O effect); the other models use the highest level only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import tvm_onnx  # noqa: E402

import edgecc  # noqa: E402
from edgecc import zoo  # noqa: E402
from edgecc.numerics import relative_error  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
DEFAULT_MODELS = ("squeezenet", "ppocr_cls", "shufflenet", "ppocr_det")
OPT_MODELS = ("squeezenet", "ppocr_cls", "shufflenet")
ORT = "onnxruntime"
TVM = "tvm"
MAX_REL_ERR = 1e-3          # an engine whose outputs differ more is reported, not timed


def ort_session(path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_outputs(got: list, want: list) -> float:
    """Worst output error relative to the reference output's scale."""
    if len(got) != len(want):
        return float("inf")
    return max(relative_error(np.asarray(g), w) for g, w in zip(got, want))


def bundle_files(path: Path) -> dict:
    """Bytes on disk of what a device links: libraries, kernel objects, weights."""
    return {"lib_a": common.dir_bytes(path, ["lib*.a"]),
            "lib_so": common.dir_bytes(path, ["lib*.so"]),
            "kernels_o": common.dir_bytes(path, ["kernels*.o"]),
            "weights": common.dir_bytes(path, ["*_weights.bin"]),
            "total_dir": common.dir_bytes(path)}


def code_digest(path: Path) -> str:
    """Hash of the generated host code and kernel objects: two -O levels with the same digest
    run the same code, so their latency ratio shows the measurement's noise floor."""
    h = hashlib.sha256()
    for f in sorted(path.glob("kernels*.o")) + sorted(path.glob("*.c")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def build_edgecc(model_path, name: str, level: int, shapes: dict, workdir: Path,
                 **options) -> tuple:
    """(loaded bundle or None, build record); options go to edgecc.compile (e.g. tune=N)."""
    outdir = workdir / f"{name}.O{level}.x86_64"
    t0 = time.perf_counter()
    try:
        art = edgecc.compile(str(model_path), target="x86_64", opt_level=level,
                             outdir=str(outdir), input_shapes=shapes, **options)
    except Exception as e:      # an unsupported model is a result, not a crash
        return None, {"ok": False, "seconds": round(time.perf_counter() - t0, 2),
                      "error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
    rec = {"ok": True, "seconds": round(time.perf_counter() - t0, 2), "error": None,
           "bytes": bundle_files(Path(art.path)), "code_sha256": code_digest(Path(art.path))}
    report = Path(art.path) / "report.json"
    if report.is_file():
        r = json.loads(report.read_text())
        rec.update({k: r.get(k) for k in ("kernels", "nodes_before", "nodes_after",
                                          "flops_after", "arena_bytes")})
    return art, rec


def compile_options(args) -> dict:
    """Extra edgecc.compile options from the command line (only those that were given)."""
    opts = {"tune": args.tune} if args.tune else {}
    if args.tune and args.tuning_cache:
        opts["tuning_cache"] = args.tuning_cache
    return opts


def bench_model(name: str, args, workdir: Path) -> dict:
    path = zoo.materialize(name)
    shapes = zoo.default_input_shapes(name)
    feeds = zoo.sample_inputs(name, seed=0)
    levels = args.opt if (name in OPT_MODELS and len(args.opt) > 1) else [max(args.opt)]
    main = f"edgecc-O{max(args.opt)}"
    row = {"model": name, "input_shapes": {k: list(v) for k, v in shapes.items()},
           "main": main, "edgecc": {}, "tvm": None, "latency": {}}
    print(f"[{name}] building ...", flush=True)

    engines = {}                     # candidate -> (one inference, set its thread count)
    ref = ort_session(path, 1).run(None, feeds)
    for level in levels:
        art, rec = build_edgecc(path, name, level, shapes, workdir, **compile_options(args))
        key = f"edgecc-O{level}"
        row["edgecc"][key] = rec
        if art is None:
            print(f"[{name}] {key} build failed: {rec['error']}", flush=True)
            continue
        rec["max_rel_err"] = check_outputs(art.run(feeds), ref)
        if rec["max_rel_err"] > MAX_REL_ERR:
            print(f"[{name}] {key} outputs differ from onnxruntime "
                  f"(rel err {rec['max_rel_err']:.2e}); not timed", flush=True)
            continue
        engines[key] = (lambda a=art: a.run(feeds), art.set_num_threads)

    if args.tvm:
        so = workdir / f"{name}.tvm.so"
        rec = tvm_onnx.build(path, shapes, so, timeout=args.tvm_timeout)
        row["tvm"] = rec
        if rec["ok"]:
            try:
                m = tvm_onnx.TvmModel(so, list(feeds))
                rec["max_rel_err"] = check_outputs(m.run(feeds), ref)
                if rec["max_rel_err"] <= MAX_REL_ERR:
                    tvm_args = m.prepare(feeds)
                    engines[TVM] = (lambda: m.call(tvm_args), tvm_onnx.set_num_threads)
                else:
                    print(f"[{name}] tvm outputs differ from onnxruntime "
                          f"(rel err {rec['max_rel_err']:.2e}); not timed", flush=True)
            except Exception as e:
                rec.update(ok=False, error=f"run: {type(e).__name__}: {str(e)[:300]}")
        if not rec["ok"]:
            print(f"[{name}] tvm failed: {rec['error']}", flush=True)

    flops = next((r.get("flops_after") for r in row["edgecc"].values() if r.get("ok")), None)
    row["flops"] = flops
    for t in args.threads:
        sess = ort_session(path, t)
        fns = {ORT: lambda s=sess: s.run(None, feeds)}
        for key, (fn, set_threads) in engines.items():
            set_threads(t)
            fns[key] = fn
        print(f"[{name}] timing {len(fns)} engines at {t} thread(s) ...", flush=True)
        load = os.getloadavg()[0]
        res = common.interleaved(fns, rounds=args.repeat, budget_seconds=args.budget)
        row["latency"][str(t)] = summarize(res, main, flops)
        # runnable processes on the machine (ours included) before/after: > cores = contended
        row["latency"][str(t)]["loadavg"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return row


def summarize(res: common.Interleaved, main: str, flops) -> dict:
    med = res.median
    out = {"rounds": len(res.samples[ORT]),
           "ms": {k: round(v * 1e3, 3) for k, v in med.items()},
           "min_ms": {k: round(v * 1e3, 3) for k, v in res.minimum.items()},
           "spread": {k: round(res.spread(k), 3) for k in med},
           "ratio_vs_onnxruntime": {k: round(res.ratio(k, ORT), 4) for k in med if k != ORT},
           # best vs best: the least contended round of each; a second opinion on a noisy VM
           "ratio_of_min": {k: round(res.minimum[k] / res.minimum[ORT], 4)
                            for k in med if k != ORT}}
    others = [k for k in med if k.startswith("edgecc-") and k != main]
    if others and main in med:
        out["ratio_vs_main"] = {k: round(res.ratio(k, main), 4) for k in others}
    if flops:
        out["gflops"] = {k: round(flops / v / 1e9, 2) for k, v in med.items()}
    return out


def summary(rows: list, threads: list, main: str) -> dict:
    s = {}
    for t in map(str, threads):
        for key in (main, TVM):
            ratios = [r["latency"][t]["ratio_vs_onnxruntime"].get(key)
                      for r in rows if t in r["latency"]]
            ratios = [x for x in ratios if x is not None]
            s.setdefault(f"geomean {key}/onnxruntime", {})[t] = \
                {"value": common.geomean(ratios) and round(common.geomean(ratios), 4),
                 "models": len(ratios)}
    return s


def print_tables(result: dict) -> None:
    rows, main = result["models"], result["config"]["main"]
    print(f"\n{'model':12} {'thr':>3} {'onnxruntime':>11} {main:>10} {'ratio':>7} "
          f"{'tvm':>10} {'ratio':>7} {'GF/s':>6} {'%sgemm':>6} {'%fma':>5} {'rounds':>6} "
          f"{'spread':>6} "
          f"{'load':>5}   (ms)")
    for r in rows:
        for t, lat in r["latency"].items():
            ms, ratio = lat["ms"], lat["ratio_vs_onnxruntime"]
            f = lambda d, k, p: f"{d[k]:{p}}" if d.get(k) is not None else "-"  # noqa: E731
            print(f"{r['model']:12} {t:>3} {ms[ORT]:11.2f} {f(ms, main, '10.2f'):>10} "
                  f"{f(ratio, main, '7.3f'):>7} {f(ms, TVM, '10.2f'):>10} "
                  f"{f(ratio, TVM, '7.2f'):>7} {f(lat.get('gflops', {}), main, '6.1f'):>6} "
                  f"{f(lat.get('pct_sgemm_peak', {}), main, '6.1f'):>6} "
                  f"{f(lat.get('pct_fma_peak', {}), main, '5.1f'):>5} {lat['rounds']:6d} "
                  f"{max(lat['spread'].values()):6.2f} {max(lat['loadavg']):5.1f}")
    print(f"\n{'model':12} {'build':>14} {'sec':>6} {'kernels':>7} {'lib.a':>9} {'lib.so':>9} "
          f"{'weights':>9}  (bytes)   rel.err / failure")
    for r in rows:
        for key, b in list(r["edgecc"].items()) + [("tvm", r["tvm"])]:
            if b is None:
                continue
            by = b.get("bytes", {})
            err = (f"{b['max_rel_err']:.1e}" if b.get("max_rel_err") is not None
                   else "") if b["ok"] else b["error"][:120]
            print(f"{r['model']:12} {key:>14} {b['seconds']:6.1f} {b.get('kernels') or '-':>7} "
                  f"{by.get('lib_a', '-'):>9} {by.get('lib_so', '-'):>9} "
                  f"{by.get('weights', '-'):>9}  {err}")
    opt_rows = [(r, t, lat["ratio_vs_main"]) for r in rows
                for t, lat in r["latency"].items() if lat.get("ratio_vs_main")]
    if opt_rows:
        print(f"\n-O effect (latency relative to {main}, same rounds; '=' marks a level whose "
              f"code is identical to {main}'s: its ratio is the noise floor):")
        for r, t, d in opt_rows:
            same = lambda k: r["edgecc"][k].get("code_sha256") == \
                r["edgecc"][main].get("code_sha256")  # noqa: E731
            print(f"  {r['model']:12} {t} thr  " + "  ".join(
                f"{k}: {v:.3f}{'=' if same(k) else ''}" for k, v in d.items()))
    print()
    for k, per_t in result["summary"].items():
        print(f"{k}: " + ", ".join(f"{t} thr {v['value']} ({v['models']} models)"
                                   for t, v in per_t.items()))


def int_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help=f"comma list of zoo models (known: {', '.join(zoo.ZOO)})")
    ap.add_argument("--threads", type=int_list, default=[1, 2])
    ap.add_argument("--opt", type=int_list, default=[3],
                    help="edgecc -O levels; several levels time each on " + ",".join(OPT_MODELS))
    ap.add_argument("--repeat", type=int, default=9, help="interleaved rounds per thread count")
    ap.add_argument("--budget", type=float, default=90.0,
                    help="stop a thread count's rounds after this many seconds (min 3 rounds)")
    ap.add_argument("--tune", type=int, default=0,
                    help="MetaSchedule trials per edgecc build (edgecc --tune; build time "
                         "includes tuning unless the records are cached)")
    ap.add_argument("--tuning-cache", default=None, help="edgecc --tuning-cache DIR")
    ap.add_argument("--no-tvm", dest="tvm", action="store_false")
    ap.add_argument("--tvm-timeout", type=float, default=600.0, help="per-model TVM build limit")
    ap.add_argument("--no-peak", dest="peak", action="store_false",
                    help="skip the numpy sgemm peak measurement")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "edgecc-bench"))
    ap.add_argument("-o", "--output", default=str(RESULTS))
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in zoo.ZOO]
    if unknown or not args.threads or not args.opt or args.repeat < 1:
        ap.error(f"unknown models {unknown}" if unknown
                 else "empty --threads/--opt or --repeat < 1")

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    peaks = {t: common.sgemm_peak_gflops(t) for t in args.threads} if args.peak else {}
    main_key = f"edgecc-O{max(args.opt)}"
    config = {"models": models, "threads": args.threads, "opt": args.opt,
              "repeat": args.repeat, "budget_seconds": args.budget,
              "edgecc_options": compile_options(args),
              "batch_seconds": common.BATCH_SECONDS, "main": main_key,
              "tvm": tvm_onnx.PIPELINE if args.tvm else None, "tvm_timeout": args.tvm_timeout,
              "per_kernel_timing": "bench/bench_profile.py (the bundle's make profile library)"}
    rows = []
    for name in models:
        try:
            rows.append(bench_model(name, args, workdir))
        except Exception as e:      # keep the other models' numbers
            traceback.print_exc()
            rows.append({"model": name, "error": f"{type(e).__name__}: {e}", "edgecc": {},
                         "tvm": None, "latency": {}})
    # the peak again after the run, keeping the best: one measurement on a contended VM
    # would understate it
    for t in peaks:
        peaks[t] = max(peaks[t], common.sgemm_peak_gflops(t))
    info["sgemm_peak_gflops"] = {str(t): round(v, 1) for t, v in peaks.items()}
    # the vector FMA ceiling too: numpy's BLAS may not use the widest vectors edgecc does
    fma = {t: max(common.fma_peak_gflops(t), common.fma_peak_gflops(t)) for t in peaks}
    info["fma_peak_gflops"] = {str(t): round(v, 1) for t, v in fma.items()}
    for r in rows:
        for t, lat in r["latency"].items():
            for key, peak in (("pct_sgemm_peak", peaks), ("pct_fma_peak", fma)):
                if lat.get("gflops") and peak.get(int(t)):
                    lat[key] = {k: round(100 * g / peak[int(t)], 1)
                                for k, g in lat["gflops"].items()}
    result = {"machine": info, "config": config, "models": rows,
              "summary": summary(rows, args.threads, main_key)}
    common.write_json(args.output, result)
    print_tables(result)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
