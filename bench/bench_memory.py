"""Memory-planner benchmark: arena size per zoo model vs. its lower bound and naive allocation.

    python bench/bench_memory.py [-O 3] [models...]
    # prints a table, writes bench/results/memory.json

Columns (bytes):
  onnx_lb   liveness lower bound of the imported (unfused) graph in file order, every
            intermediate its own buffer (no view aliasing, no in-place): what a runtime that
            frees tensors after their last use needs at best
  naive     one buffer per intermediate tensor of the planned graph, no reuse at all
  lb        lower bound of the planned graph (views aliased, in-place, chosen order)
  arena     what the planner actually allocates; ratio = arena / lb
  bundle    the x86_64 bundle's arena: the same plus TVM kernel scratch (reserved for the
            bundle's scratch threads), with kernels at the peak built scratch-free
            (plan_bundle(peak_scratch_free=True), what `edgecc` builds); b/onnx_lb = bundle /
            onnx_lb, the issue's bar
The planned graph is the imported graph after the -O pipeline when the pass manager is
available, else the imported graph itself (the "opt" field says which).

TVM's own planner, on TVM's ONNX path (the materialized zoo model through TVM 0.27's
`relax.frontend.onnx.from_onnx` with the static input shapes bound), as reported by
`relax.analysis.estimate_memory_usage` after StaticPlanBlockMemory, in two variants:
  tvm       the passes of tvm.compile's default Relax pipeline (what bench_latency.py builds:
            no operator fusion) up to and including StaticPlanBlockMemory. That pipeline has
            no FoldConstant, so from_onnx's transposes of Gemm weights run (and allocate) at
            run time: hundreds of MiB on vgg19 / alexnet / zfnet512
  tvm_fused the same after the fusion passes of relax.get_pipeline("zero") (LegalizeOps,
            AnnotateTIROpPattern, FoldConstant, FuseOps, FuseTIR): fewer intermediates
Per variant: "noplan" = every alloc_tensor its own allocation (TVM's "without memory
planning"), "planned" = TVM's "with memory planning" (its alloc_storage pools plus the
allocations it leaves unplanned, i.e. the function's outputs), "pool" = the alloc_storage
part alone, which like edgecc's arena excludes inputs, weights and outputs.
a/tvm = arena / tvm planned, a/pool = arena / tvm pool, a/tvmF = arena / tvm_fused planned
(the json also has vs_tvm_fused_pool). Each TVM run is a child process with a time limit;
a model TVM cannot import or lower gets the first line of the error instead of numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from edgecc import zoo  # noqa: E402
from edgecc.backends.memory.alloc import lower_bound
from edgecc.backends.memory.liveness import liveness
from edgecc.backends.bundle.program import plan_bundle
from edgecc.backends.tvm.build import KernelSet
from edgecc.backends.memory.plan import plan_graph
from edgecc.driver import parse_input_shape
from edgecc.onnx_import import import_onnx

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "memory.json")


def optimize(graph, level: int):
    """(graph after the -O pipeline, level label)."""
    from edgecc.pass_manager import PassManager, pipeline
    return PassManager(pipeline(level), target=common.host()).run(graph), f"O{level}"

# ---- TVM's own planner (runs in a child process: `--tvm-child`) ------------------------------
TVM_TIMEOUT = 600.0      # seconds per model, import + both lowerings (ppocr_det takes ~40 s)


def tvm_plan(name: str, timeout: float = TVM_TIMEOUT) -> dict:
    """TVM's planner figures for zoo model `name` ({"tvm": {...}, "tvm_fused": {...}}, each
    {"noplan", "planned", "pool", ...} or {"error"}); never raises for a TVM failure."""
    cmd = [sys.executable, os.path.abspath(__file__), "--tvm-child",
           str(zoo.materialize(name))]
    for inp, dims in zoo.default_input_shapes(name).items():
        cmd += ["--input-shape", f"{inp}={','.join(map(str, dims))}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        err = {"error": f"TVM import + lowering did not finish within the {timeout:g} s limit"}
        return {"tvm": err, "tvm_fused": err}
    try:
        return json.loads((proc.stdout.strip().splitlines() or [""])[-1])
    except ValueError:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        err = {"error": f"TVM child exited {proc.returncode}: {tail[:300]}"}
        return {"tvm": err, "tvm_fused": err}


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def _lowerings():
    """Pass lists up to StaticPlanBlockMemory, copied from tvm/relax/pipeline.py
    (default_build_pipeline; zero_pipeline for the fusion passes): those pipelines are
    closures, so their pass lists cannot be read back."""
    from tvm.relax import backend, transform as T
    legalize = [backend.DispatchSampling(), backend.DispatchSortScan(), T.LegalizeOps()]
    fuse = [T.AnnotateTIROpPattern(), T.FoldConstant(), T.FuseOps(), T.FuseTIR()]
    plan = [T.RewriteDataflowReshape(), T.ToNonDataflow(), T.RemovePurityChecking(),
            T.CallTIRRewrite(), T.StaticPlanBlockMemory()]
    return {"tvm": legalize + plan, "tvm_fused": legalize + fuse + plan}


def count_allocs(func) -> dict:
    """Exact bytes behind estimate_memory_usage's two figures for one Relax function (its
    text rounds to 4 digits of GB): the same three allocation calls, counted the same way."""
    import tvm
    from tvm import relax
    ops = {n: tvm.ir.Op.get(n) for n in ("relax.builtin.alloc_tensor",
                                         "relax.memory.alloc_tensor",
                                         "relax.memory.alloc_storage")}
    c = {"noplan": 0, "pool": 0, "unplanned": 0, "tensors": 0, "storages": 0, "dynamic": 0}

    def nbytes(shape, dtype):
        if not all(isinstance(d, tvm.tirx.IntImm) for d in shape.values):
            c["dynamic"] += 1
            return None
        dt = tvm.DataType(dtype)
        n = (dt.bits + 7) // 8 * dt.lanes
        for d in shape.values:
            n *= d.value
        return n

    def visit(e):
        if not isinstance(e, relax.Call):
            return
        if e.op.same_as(ops["relax.builtin.alloc_tensor"]):      # left unplanned by TVM
            n = nbytes(e.args[0], e.args[1].value)
            if n is not None:
                c["noplan"] += n
                c["unplanned"] += n
                c["tensors"] += 1
        elif e.op.same_as(ops["relax.memory.alloc_tensor"]):     # a view into a storage
            n = nbytes(e.args[2], e.args[3].value)
            if n is not None:
                c["noplan"] += n
                c["tensors"] += 1
        elif e.op.same_as(ops["relax.memory.alloc_storage"]):
            c["pool"] += int(e.args[0].values[0].value)
            c["storages"] += 1

    relax.analysis.post_order_visit(func, visit)
    c["planned"] = c["pool"] + c["unplanned"]
    return c


def _check_against_estimate(c: dict, text: str) -> None:
    """Our exact counts must round to the GB figures TVM prints (guards count_allocs)."""
    import re
    gb = [float(x) for x in re.findall(r"total size ([0-9.e+-]+) GB", text)]
    for ours, theirs in zip((c["noplan"], c["planned"]), gb[:2]):
        if abs(ours / 2**30 - theirs) > 1e-3 * max(theirs, 1e-9) + 1e-12:
            raise AssertionError(f"count_allocs {ours} B disagrees with TVM's {theirs} GB")


def _tvm_child(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--input-shape", action="append", default=[])
    a = ap.parse_args(argv)
    shapes = {inp: list(dims) for inp, dims in map(parse_input_shape, a.input_shape)}
    res = {}
    try:
        import onnx
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx
        t0 = time.perf_counter()
        mod = from_onnx(onnx.load(a.model), shape_dict=shapes)
        imported = time.perf_counter() - t0
    except Exception as e:      # any TVM failure is the finding we record
        err = {"error": "import (relax.frontend.onnx.from_onnx): " + _first_line(e)}
        print(json.dumps({"tvm": err, "tvm_fused": err}))
        return 0
    for variant, passes in _lowerings().items():
        t0 = time.perf_counter()
        try:
            with common.host().tvm:
                low = tvm.transform.Sequential(passes)(mod)
            text = relax.analysis.estimate_memory_usage(low)
            c = count_allocs(low["main"])
            _check_against_estimate(c, text)
            c["seconds"] = round(time.perf_counter() - t0 + imported, 2)
            c["estimate"] = text.strip()
            res[variant] = c
        except Exception as e:
            res[variant] = {"error": "lowering to StaticPlanBlockMemory: " + _first_line(e)}
    print(json.dumps(res))
    return 0


def bench_model(name: str, level: int) -> dict:
    graph = import_onnx(str(zoo.source_path(name)), zoo.default_input_shapes(name))
    onnx_lb = lower_bound(liveness(graph, views=False, inplace=False))
    n_onnx = len(graph.ops)
    graph, opt = optimize(graph, level)
    t0 = time.perf_counter()
    gp = plan_graph(graph)
    seconds = time.perf_counter() - t0
    bundle = plan_bundle(graph, KernelSet(graph, common.host()), peak_scratch_free=True)
    return {"model": name, "opt": opt, "ops_imported": n_onnx, "kernels": len(graph.ops),
            "onnx_lb": onnx_lb, "naive": gp.naive_bytes, "lb": gp.lower_bound_bytes,
            "arena": gp.arena_bytes,
            "ratio": round(gp.arena_bytes / gp.lower_bound_bytes, 4) if gp.lower_bound_bytes
            else 1.0,
            "vs_onnx_lb": round(gp.arena_bytes / onnx_lb, 4) if onnx_lb else 1.0,
            "bundle_arena": bundle.memory.arena_bytes,
            "bundle_vs_onnx_lb": round(bundle.memory.arena_bytes / onnx_lb, 4) if onnx_lb
            else 1.0,
            "bundle_scratch_free_kernels": len(bundle.scratch_free),
            "bundle_scratch_threads": bundle.workspace_threads,
            "strategy": gp.strategy, "order": gp.order_name,
            "inplace": len(gp.inplace),
            "concats_eliminated": sum(1 for op in gp.order
                                      if op.kind == "Concat" and gp.is_noop(op)),
            "concats": sum(1 for op in gp.order if op.kind == "Concat"),
            "plan_seconds": round(seconds, 3)}


def add_tvm(row: dict, figures: dict) -> dict:
    """row with TVM's figures and edgecc's arena relative to them (None where TVM failed)."""
    row = dict(row)
    for variant in ("tvm", "tvm_fused"):
        f = figures.get(variant) or {"error": "no result"}
        row[variant] = f
        ok = "error" not in f
        row[f"vs_{variant}"] = round(row["arena"] / f["planned"], 4) if ok and f["planned"] \
            else None
        row[f"vs_{variant}_pool"] = round(row["arena"] / f["pool"], 4) if ok and f["pool"] \
            else None
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(zoo.ZOO))
    ap.add_argument("-O", dest="level", type=int, default=3)
    ap.add_argument("-o", "--output", default=RESULTS)
    ap.add_argument("--no-tvm", action="store_true", help="skip TVM's planner figures")
    ap.add_argument("--tvm-timeout", type=float, default=TVM_TIMEOUT,
                    help="seconds per model for TVM's import + lowering (default %(default)g)")
    args = ap.parse_args(argv)
    rows = [bench_model(m, args.level) for m in args.models]
    if not args.no_tvm:
        for i, r in enumerate(rows):
            print(f"[{r['model']}] TVM import + StaticPlanBlockMemory ...", flush=True)
            rows[i] = add_tvm(r, tvm_plan(r["model"], args.tvm_timeout))
    mb = lambda n: f"{n / 2**20:8.2f}"  # noqa: E731
    tvm_cols = (f" {'tvm_noplan':>10} {'tvm_plan':>8} {'a/tvm':>6} {'a/pool':>6}"
                f" {'tvmF_plan':>9} {'a/tvmF':>6}") if not args.no_tvm else ""
    print(f"{'model':14} {'opt':4} {'kernels':>7} {'onnx_lb':>8} {'naive':>8} {'lb':>8} "
          f"{'arena':>8} {'ratio':>6} {'arena/onnx_lb':>13} {'bundle':>8} {'b/onnx_lb':>9}"
          f"{tvm_cols}"
          f"  strategy / order   (MiB)")
    failures = []
    for r in rows:
        tvm = ""
        if not args.no_tvm:
            t, tf = r["tvm"], r["tvm_fused"]
            num = lambda x, w, f: f" {'n/a':>{w}}" if x is None else f" {f(x):>{w}}"  # noqa
            ratio = lambda x: f"{x:.3f}"  # noqa: E731
            tvm = (num(t.get("noplan"), 10, mb) + num(t.get("planned"), 8, mb)
                   + num(r["vs_tvm"], 6, ratio) + num(r["vs_tvm_pool"], 6, ratio)
                   + num(tf.get("planned"), 9, mb) + num(r["vs_tvm_fused"], 6, ratio))
            failures += [(r["model"], v, r[v]["error"]) for v in ("tvm", "tvm_fused")
                         if "error" in r[v]]
        print(f"{r['model']:14} {r['opt'][:4]:4} {r['kernels']:7d} {mb(r['onnx_lb'])} "
              f"{mb(r['naive'])} {mb(r['lb'])} {mb(r['arena'])} {r['ratio']:6.3f} "
              f"{r['vs_onnx_lb']:13.3f} {mb(r['bundle_arena'])} {r['bundle_vs_onnx_lb']:9.3f}"
              f"{tvm}  {r['strategy']} / {r['order']}"
              f"  concat {r['concats_eliminated']}/{r['concats']}, {r['plan_seconds']:.2f}s")
    for model, variant, err in failures:
        print(f"  {model} {variant}: {err}")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"unit": "bytes", "models": rows}, f, indent=1)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tvm-child"]:
        sys.exit(_tvm_child(sys.argv[2:]))
    sys.exit(main())
