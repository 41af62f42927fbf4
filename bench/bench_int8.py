"""int8 accuracy, size and latency: edgecc --int8 against its own fp32 bundle and against
onnxruntime's quantize_static (QDQ, per-channel s8 weights, u8 activations, MinMax) calibrated
on the same samples.

    python bench/bench_int8.py [--models ppocr_cls,captcha_crnn,ppocr_det,squeezenet,...]
        [--calib 16] [--eval 8] [--min-sqnr DB] [--threads 1,2] [--out bench/results/int8.json]

Inputs: the shared models are calibrated on ../shared/calib and evaluated on inputs rendered
separately (bench/int8_data.py); light-zoo models (random weights, BN statistics re-estimated)
on seeded Gaussian inputs, other seeds for evaluation. Per model it prints: output SQNR vs fp32
of edgecc and of onnxruntime (each against its own fp32 run), task answers kept (class,
greedy CTC text, detection map IoU >= 0.9), int8 share of conv/gemm MACs, ops left float,
weights and arena vs the fp32 bundle, calibration time, and latency interleaved in one run:
edgecc int8 / edgecc fp32 / onnxruntime fp32 / onnxruntime int8 (ORT_ENABLE_ALL).
onnxruntime's int8 accuracy is measured with ORT_DISABLE_ALL (its optimized graph computes
chained QuantizeLinear → DequantizeLinear with different scales wrongly).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import int8_data  # noqa: E402
from ort_quantize import quantize as ort_quantize  # noqa: E402

import edgecc  # noqa: E402
from edgecc import zoo  # noqa: E402
from edgecc.calibrate import pooled_sqnr  # noqa: E402

DEFAULT_MODELS = ("ppocr_cls", "captcha_crnn", "ppocr_det", "squeezenet", "resnet50")


def samples(name: str, n_calib: int, n_eval: int):
    """(input name, shape, calibration [S,1,...], evaluation [E,1,...], task name or None)."""
    if name in int8_data.INPUT:
        inp, shape = int8_data.INPUT[name]
        return (inp, shape, int8_data.calibration(name)[:n_calib, None],
                int8_data.evaluation(name)[:n_eval, None], name)
    shapes = zoo.default_input_shapes(name)
    (inp, shape), = shapes.items()
    calib = np.stack([zoo.sample_inputs(name, seed=1 + i)[inp] for i in range(n_calib)])
    ev = np.stack([zoo.sample_inputs(name, seed=1000 + i)[inp] for i in range(n_eval)])
    return inp, tuple(shape), calib, ev, None


def prepared(name: str, args, work: Path):
    """(input name, {input: shape}, calibration, evaluation, task, model path, calibration
    .npz written in `work`) of a benchmark model."""
    inp, shape, calib, ev, task = samples(name, args.calib, args.eval)
    calib_file = work / f"{name}_calib.npz"
    np.savez(calib_file, **{inp: calib})
    return inp, {inp: shape}, calib, ev, task, model_file(name), calib_file


def model_file(name: str) -> Path:
    return int8_data.model_path(name) if name in int8_data.INPUT else zoo.materialize(name)


def ort_session(path, threads: int, optimize: bool):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else
                                   ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bench_model(name: str, args, work: Path) -> dict:
    inp, shapes, calib, ev, task, path, calib_file = prepared(name, args, work)
    print(f"[{name}] fp32 build ...", flush=True)
    f = edgecc.compile(str(path), outdir=str(work / f"{name}.fp32"), input_shapes=shapes)
    print(f"[{name}] int8 build (calibration on {len(calib)} samples) ...", flush=True)
    t0 = time.perf_counter()
    opts = {"int8_min_sqnr": args.min_sqnr} if args.min_sqnr is not None else {}
    q = edgecc.compile(str(path), outdir=str(work / f"{name}.int8"), input_shapes=shapes,
                       int8=True, calib=str(calib_file), **opts)
    build_s = time.perf_counter() - t0
    rf = json.loads((work / f"{name}.fp32" / "report.json").read_text())
    rq = json.loads((work / f"{name}.int8" / "report.json").read_text())
    quant_s = sum(p["seconds"] for p in rq["passes"] if p["name"] == "quantize-int8")

    print(f"[{name}] onnxruntime quantize_static ...", flush=True)
    ort_q = work / f"{name}.ort_qdq.onnx"
    t0 = time.perf_counter()
    ort_quantize(str(path), {inp: calib}, str(ort_q), "qdq", shapes=shapes)
    ort_quant_s = time.perf_counter() - t0
    ort_f_exact = ort_session(path, 1, True)
    ort_q_exact = ort_session(ort_q, 1, False)

    ours, theirs, kept_ours, kept_theirs = [], [], 0, 0
    for x in ev:
        a, b = f.run({inp: x}), q.run({inp: x})
        c = ort_f_exact.run(None, {inp: x})
        d = ort_q_exact.run(None, {inp: x})
        ours += list(zip(a, b))
        theirs += list(zip(c, d))
        if task:
            kept_ours += int8_data.same_answer(task, int8_data.answer(task, a),
                                               int8_data.answer(task, b))
            kept_theirs += int8_data.same_answer(task, int8_data.answer(task, c),
                                                 int8_data.answer(task, d))
    r8 = rq["int8"]
    row = {"model": name, "calib_samples": len(calib), "eval_samples": len(ev),
           "sqnr_db": round(pooled_sqnr(ours), 2),
           "ort_sqnr_db": round(pooled_sqnr(theirs), 2),
           "answers_kept": f"{kept_ours}/{len(ev)}" if task else None,
           "ort_answers_kept": f"{kept_theirs}/{len(ev)}" if task else None,
           "calib_sqnr_db": r8["sqnr_db"], "budget_db": r8.get("min_sqnr_db"),
           "quantized_macs_fraction": r8["quantized_macs_fraction"],
           "quantized_ops": r8["quantized_ops"], "float_ops": r8["float_ops"],
           "kept_float": r8.get("kept_float"),
           "weights_ratio": round(rq["params_bytes_after"] / rf["params_bytes_after"], 3),
           "arena_ratio": round(rq["arena_bytes"] / rf["arena_bytes"], 3),
           "int8_build_s": round(build_s, 1), "quantize_pass_s": round(quant_s, 1),
           "ort_quantize_s": round(ort_quant_s, 1), "latency": {}}
    feeds = {inp: ev[0]}
    for t in args.threads:
        so_f, so_q = ort_session(path, t, True), ort_session(ort_q, t, True)
        f.set_num_threads(t)
        q.set_num_threads(t)
        fns = {"edgecc-int8": lambda: q.run(feeds), "edgecc-fp32": lambda: f.run(feeds),
               "ort-fp32": lambda: so_f.run(None, feeds),
               "ort-int8": lambda: so_q.run(None, feeds)}
        print(f"[{name}] timing at {t} thread(s) ...", flush=True)
        res = common.interleaved(fns, rounds=args.repeat, budget_seconds=args.budget)
        med = res.median
        row["latency"][str(t)] = {
            "ms": {k: round(v * 1e3, 3) for k, v in med.items()},
            "int8_vs_edgecc_fp32": round(res.ratio("edgecc-int8", "edgecc-fp32"), 3),
            "int8_vs_ort_fp32": round(res.ratio("edgecc-int8", "ort-fp32"), 3),
            "int8_vs_ort_int8": round(res.ratio("edgecc-int8", "ort-int8"), 3)}
    return row


def print_table(rows: list, threads: list) -> None:
    print()
    print("| model | SQNR edgecc / ORT (dB) | answers edgecc / ORT | int8 MACs | float ops "
          "| weights | arena | calib s | " +
          " | ".join(f"int8 / fp32 / ORT-fp32 / ORT-int8 ({t}T)" for t in threads) + " |")
    print("|" + "---|" * (8 + len(threads)))
    for r in rows:
        lat = " | ".join(
            f"1 / {1 / r['latency'][str(t)]['int8_vs_edgecc_fp32']:.2f} / "
            f"{1 / r['latency'][str(t)]['int8_vs_ort_fp32']:.2f} / "
            f"{1 / r['latency'][str(t)]['int8_vs_ort_int8']:.2f}" for t in threads)
        print(f"| {r['model']} | {r['sqnr_db']:.1f} / {r['ort_sqnr_db']:.1f} | "
              f"{r['answers_kept'] or '-'} / {r['ort_answers_kept'] or '-'} | "
              f"{r['quantized_macs_fraction']:.0%} | {r['float_ops']} | "
              f"{r['weights_ratio']:.2f}x | {r['arena_ratio']:.2f}x | {r['quantize_pass_s']:.0f} | "
              f"{lat} |")
    print("(latency: the int8 bundle's time as 1; the others relative to it, interleaved)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--calib", type=int, default=16, help="calibration samples")
    ap.add_argument("--eval", type=int, default=8, help="evaluation samples (other inputs)")
    ap.add_argument("--min-sqnr", type=float, default=None, help="edgecc's budget (default: its own)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of timing per model")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "int8.json"))
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    rows = []
    kept = []                     # rows of other models from an earlier run stay in the file
    if Path(args.out).is_file():
        kept = [r for r in json.loads(Path(args.out).read_text()).get("rows", [])
                if r["model"] not in args.models.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows.append(bench_model(name, args, Path(tmp)))
            common.write_json(args.out, {"machine": common.machine_info(),
                                         "rows": kept + rows})
    print_table(rows, args.threads)
    print(f"CPU: {common.cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
