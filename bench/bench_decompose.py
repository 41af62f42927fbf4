"""Tensor decomposition: accuracy, FLOPs and latency of edgecc --decompose against the plain
-O3 bundle, over a sweep of the accuracy budget.

    python bench/bench_decompose.py [--models captcha_crnn,ppocr_det,ppocr_cls]
        [--sqnr 40,30,25,20] [--calib 16] [--eval 8] [--threads 1]
        [--out bench/results/decompose.json] [--plot bench/results/decompose.png]

Inputs as bench/bench_int8.py: the shared trained models are calibrated on ../shared/calib and
evaluated on inputs rendered separately (bench/int8_data.py). Per model and budget
(--decompose-min-sqnr) it prints: layers factored, conv/gemm FLOPs removed, output SQNR vs the
-O3 bundle on the evaluation inputs, task answers kept (class, greedy CTC text, detection map
IoU >= 0.9), the decompose pass's time, and the decomposed bundle's latency relative to the
-O3 bundle, interleaved in one run per thread count (this VM's speed drifts).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import int8_data  # noqa: E402
from bench_int8 import model_file, prepared, samples  # noqa: E402

import edgecc  # noqa: E402
from edgecc.calibrate import pooled_sqnr  # noqa: E402

DEFAULT_MODELS = ("captcha_crnn", "ppocr_det", "ppocr_cls")


def bench_model(name: str, args, work: Path) -> list[dict]:
    inp, shapes, _, ev, task, path, calib_file = prepared(name, args, work)
    print(f"[{name}] -O3 build ...", flush=True)
    base = edgecc.compile(str(path), outdir=str(work / f"{name}.o3"), input_shapes=shapes)
    base_out = [base.run({inp: x}) for x in ev]
    rows = []
    for db in args.sqnr:
        print(f"[{name}] --decompose --decompose-min-sqnr {db} ...", flush=True)
        t0 = time.perf_counter()
        out = work / f"{name}.dec{db:g}"
        dec = edgecc.compile(str(path), outdir=str(out), input_shapes=shapes, decompose=True,
                             calib=str(calib_file), decompose_min_sqnr=db)
        build_s = time.perf_counter() - t0
        rep = json.loads((out / "report.json").read_text())
        d = rep["decompose"]
        pairs, kept = [], 0
        for x, want in zip(ev, base_out):
            got = dec.run({inp: x})
            pairs += list(zip(want, got))
            if task:
                kept += int8_data.same_answer(task, int8_data.answer(task, want),
                                              int8_data.answer(task, got))
        total = d["conv_gemm_flops"]
        row = {"model": name, "budget_db": db, "layers": d["layers"],
               "flops_saved": d["flops_saved"], "conv_gemm_flops": total,
               "flops_removed_fraction": round(d["flops_saved"] / total, 4) if total else 0.0,
               "calib_sqnr_db": d["sqnr_db"],
               "eval_sqnr_db": round(pooled_sqnr(pairs), 2) if d["layers"] else None,
               "answers_kept": f"{kept}/{len(ev)}" if task else None,
               "params_saved": d["params_saved"], "build_s": round(build_s, 1),
               "decompose_pass_s": round(sum(p["seconds"] for p in rep["passes"]
                                             if p["name"] == "decompose"), 1),
               "layers_detail": [x for x in d["layers_detail"] if x["ranks"]],
               "latency": {}}
        feeds = {inp: ev[0]}
        for t in args.threads:
            base.set_num_threads(t)
            dec.set_num_threads(t)
            res = common.interleaved({"decomposed": lambda: dec.run(feeds),
                                      "o3": lambda: base.run(feeds)},
                                     rounds=args.repeat, budget_seconds=args.budget)
            med = res.median
            row["latency"][str(t)] = {"ms": {k: round(v * 1e3, 3) for k, v in med.items()},
                                      "vs_o3": round(res.ratio("decomposed", "o3"), 3)}
        rows.append(row)
        print(f"[{name}] budget {db:g} dB: {d['layers']} layers, "
              f"{row['flops_removed_fraction']:.1%} conv/gemm FLOPs removed, eval SQNR "
              f"{row['eval_sqnr_db']} dB, answers {row['answers_kept']}, latency "
              + ", ".join(f"{v['vs_o3']:.3f}x ({t}T)" for t, v in row["latency"].items()),
              flush=True)
    return rows


def cost_check(name: str, args) -> dict:
    """decompose's cost model against measured kernels on this machine: for every candidate
    layer and rank level, the predicted time saved against the time saved by the compiled
    kernels (the model as it is and with every layer at that level, laid out and fused like
    -O3, each kernel timed in place)."""
    from edgecc.backends.tvm.build import CompiledGraph
    from edgecc.driver import load_model
    from edgecc.pass_manager import PassManager, parse_pass, pipeline
    from edgecc.pass_registry import PassContext
    from edgecc.passes import decompose as D
    from edgecc.target import host_arch, host_target
    inp, shape, calib, _, _ = samples(name, 1, 1)
    target = host_target(host_arch())
    lanes = target.lanes("f32")
    graph, _ = load_model(str(model_file(name)), {inp: shape})
    graph = PassManager([p for p in pipeline(3) if p.name not in
                         ("convert-layout", "fuse-kernels", "dce")],
                        ctx=PassContext(target=target)).run(graph)
    layers, _ = D.candidates(graph, PassContext(target=target), lanes)
    feeds = {inp: calib[0]}

    def per_layer(g):
        g = PassManager([parse_pass("convert-layout"), parse_pass("fuse-kernels"),
                         parse_pass("dce")], verify=False,
                        ctx=PassContext(target=target)).run(g.clone())
        compiled = CompiledGraph(g, target)
        out: dict = {}
        for call, t in zip(compiled.calls, compiled.time_calls(feeds, 7)):
            op = g.ops[call.index]
            inner = op.attrs["body"].ops if op.kind == "Fused" else [op]
            # a kernel counts for the layer whose contraction it computes (a fused layout
            # conversion or epilogue is named after its first op)
            names = [o.name for o in inner if o.kind in ("Conv", "Gemm", "MatMul")] or \
                [call.op_name]
            src = names[0]
            for suffix in D.FACTOR_SUFFIXES:
                src = src[:-len(suffix)] if src.endswith(suffix) else src
            out[src] = out.get(src, 0.0) + t
        return out

    base = per_layer(graph)
    pairs = []
    for j in range(len(D.RANK_FRACTIONS)):
        at = {lay: j for lay in layers if j in lay.levels}
        if not at:
            continue
        factors = {(id(lay), j): D.Factorizer(lay.method, lay.w, lay.bias, None).factors(
            lay.levels[j]) for lay in at}
        times = per_layer(D._build(graph, at, factors)[0])
        for lay in at:
            names = {op.name for op in lay.ops}
            before = sum(base.get(n, 0.0) for n in names)
            after = sum(times.get(n, 0.0) for n in names)
            predicted = D.seconds(lay.kernels(None, lanes), lanes) - \
                D.seconds(lay.kernels(lay.levels[j], lanes), lanes)
            pairs.append({"node": lay.describe(), "ranks": list(lay.levels[j]),
                          "measured_us": round((before - after) * 1e6, 1),
                          "predicted_us": round(predicted * 1e6, 1),
                          "layer_us": round(before * 1e6, 1)})
    kept = [p for p in pairs if p["predicted_us"] >= D.MIN_SAVING * p["layer_us"]]
    slower = [p for p in kept if p["measured_us"] < 0]
    print(f"[{name}] cost model: {len(pairs)} (layer, rank) pairs, sign agrees on "
          f"{sum((p['measured_us'] > 0) == (p['predicted_us'] > 0) for p in pairs)}; of the "
          f"{len(kept)} the pass may keep (>= {D.MIN_SAVING:.0%} predicted), {len(slower)} "
          f"measured slower", flush=True)
    return {"model": name, "pairs": pairs, "kept": len(kept), "kept_but_slower": len(slower)}


def print_table(rows: list, threads: list) -> None:
    print()
    print("| model | budget dB | layers | FLOPs removed | SQNR calib / eval dB | answers | "
          + " | ".join(f"latency vs -O3 ({t}T)" for t in threads) + " | pass s |")
    print("|" + "---|" * (7 + len(threads)))
    for r in rows:
        lat = " | ".join(f"{r['latency'][str(t)]['vs_o3']:.3f}" for t in threads)
        print(f"| {r['model']} | {r['budget_db']:g} | {r['layers']} | "
              f"{r['flops_removed_fraction']:.1%} | {r['calib_sqnr_db']} / {r['eval_sqnr_db']} "
              f"| {r['answers_kept'] or '-'} | {lat} | {r['decompose_pass_s']:.0f} |")


def plot(rows: list, dest: Path, threads: int) -> None:
    """SQNR (eval) and latency vs FLOPs removed, one line per model."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = sorted((r for r in rows if r["model"] == name),
                    key=lambda r: r["flops_removed_fraction"])
        x = [100 * r["flops_removed_fraction"] for r in rs]
        a.plot(x, [r["eval_sqnr_db"] or float("nan") for r in rs], "o-", label=name)
        b.plot(x, [r["latency"][str(threads)]["vs_o3"] for r in rs], "o-", label=name)
    a.set_xlabel("conv/gemm FLOPs removed (%)")
    a.set_ylabel("output SQNR on eval inputs (dB)")
    b.set_xlabel("conv/gemm FLOPs removed (%)")
    b.set_ylabel(f"latency vs -O3 ({threads} thread)")
    a.legend()
    fig.suptitle(f"edgecc --decompose budget sweep ({common.cpu_model()})", fontsize=9)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--sqnr", default="40,30,25,20", help="--decompose-min-sqnr values (dB)")
    ap.add_argument("--calib", type=int, default=16, help="calibration samples")
    ap.add_argument("--eval", type=int, default=8, help="evaluation samples (other inputs)")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--budget", type=float, default=30.0, help="seconds of timing per build")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decompose.json"))
    ap.add_argument("--plot", default=str(Path(__file__).parent / "results" / "decompose.png"))
    ap.add_argument("--cost-check", action="store_true",
                    help="also compare the pass's cost model with measured kernel times")
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    args.sqnr = [float(s) for s in args.sqnr.split(",")]
    rows, checks = [], []
    kept, kept_checks = [], []    # other models' results from an earlier run stay in the file
    if Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        kept = [r for r in old.get("rows", []) if r["model"] not in args.models.split(",")]
        kept_checks = [r for r in old.get("cost_check", [])
                       if not args.cost_check or r["model"] not in args.models.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if args.cost_check:
                checks.append(cost_check(name, args))
            rows += bench_model(name, args, Path(tmp))
            common.write_json(args.out, {"machine": common.machine_info(),
                                         "rows": kept + rows,
                                         "cost_check": kept_checks + checks})
    print_table(rows, args.threads)
    if args.plot:
        plot(kept + rows, Path(args.plot), args.threads[0])
    print(f"CPU: {common.cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
