"""Import time, reference-executor error and speed vs onnxruntime, per zoo model.

    python bench/bench_reference.py [--models a,b,...] [--cache DIR]

Prints a table and writes bench/results/reference.json. The reference executor is the oracle
(plain Numba loops), so its time is informational; the error column is what `edgecc check`
enforces (max |ours - onnxruntime| / max |onnxruntime|, must be <= 1e-4, or else edgecc must
be the one closer to a float64 execution of the same graph: the ours-f64 / ort-f64 columns).
PP-OCR models are also checked on a rendered image of text.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecc import zoo
from edgecc.check import onnxruntime_outputs, promote_to_f64
from edgecc.numerics import relative_error
from edgecc.kernels import run_graph
from edgecc.onnx_import import import_onnx


def measure(name: str, cache: Path) -> dict:
    path = zoo.materialize(name, cache)
    shapes = zoo.default_input_shapes(name)
    t0 = time.perf_counter()
    graph = import_onnx(str(path), shapes)
    t_import = time.perf_counter() - t0
    cases = {"seeded": zoo.sample_inputs(name, seed=0)}
    if name.startswith("ppocr"):
        (input_name, shape), = shapes.items()
        cases["text_image"] = {input_name: zoo.text_image(shape[2], shape[3])}
    row = {"model": name, "import_s": round(t_import, 3), "ops": len(graph.ops)}
    for case, feeds in cases.items():
        run_graph(graph, feeds)                       # warm-up (Numba compile / cache load)
        t0 = time.perf_counter()
        ours = run_graph(graph, feeds)
        t_ref = time.perf_counter() - t0
        onnxruntime_outputs(str(path), feeds)
        t0 = time.perf_counter()
        theirs = onnxruntime_outputs(str(path), feeds)
        t_ort = time.perf_counter() - t0
        err = max(relative_error(g, w) for g, w in zip(ours, theirs))
        exact = run_graph(promote_to_f64(graph), {k: a.astype(np.float64) for k, a in feeds.items()})
        ours64 = max(relative_error(g, w) for g, w in zip(ours, exact))
        ort64 = max(relative_error(g, w) for g, w in zip(theirs, exact))
        row[case] = {"rel_err": float(f"{err:.3g}"), "ours_vs_f64": float(f"{ours64:.3g}"),
                     "ort_vs_f64": float(f"{ort64:.3g}"), "reference_s": round(t_ref, 3),
                     "onnxruntime_s": round(t_ort, 4), "ratio": round(t_ref / t_ort, 1)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(zoo.ZOO))
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "edgecc-zoo-cache"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "reference.json"))
    args = ap.parse_args()
    rows = []
    print(f"{'model':14} {'import s':>8} {'case':>10} {'rel err':>9} {'ours-f64':>9} "
          f"{'ort-f64':>9} {'ref s':>7} {'ort s':>7} {'ref/ort':>7}")
    for name in args.models.split(","):
        row = measure(name, Path(args.cache))
        rows.append(row)
        for case in ("seeded", "text_image"):
            if case in row:
                r = row[case]
                print(f"{name:14} {row['import_s']:8.2f} {case:>10} {r['rel_err']:9.2g} "
                      f"{r['ours_vs_f64']:9.2g} {r['ort_vs_f64']:9.2g} {r['reference_s']:7.2f} {r['onnxruntime_s']:7.3f} {r['ratio']:7.1f}",
                      flush=True)
    worst = max(r[c]["rel_err"] for r in rows for c in ("seeded", "text_image") if c in r)
    print(f"worst relative error {worst:.3g} (limit 1e-4)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "numpy": np.__version__, "models": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
