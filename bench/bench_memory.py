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
The planned graph is the imported graph after the -O pipeline when the pass manager is
available, else the imported graph itself (the "opt" field says which).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from edgecc import zoo
from edgecc.backends.memory_alloc import lower_bound
from edgecc.backends.memory_liveness import liveness
from edgecc.backends.memory_plan import plan_graph
from edgecc.onnx_import import import_onnx

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "memory.json")


def optimize(graph, level: int):
    """(graph after the -O pipeline, level label); the imported graph while no pass manager."""
    try:
        from edgecc.pass_manager import PassManager, pipeline
    except ImportError:
        return graph, "O0"
    return PassManager(pipeline(level)).run(graph), f"O{level}"


def bench_model(name: str, level: int) -> dict:
    graph = import_onnx(str(zoo.source_path(name)), zoo.default_input_shapes(name))
    onnx_lb = lower_bound(liveness(graph, views=False, inplace=False))
    n_onnx = len(graph.ops)
    graph, opt = optimize(graph, level)
    t0 = time.perf_counter()
    gp = plan_graph(graph)
    seconds = time.perf_counter() - t0
    return {"model": name, "opt": opt, "ops_imported": n_onnx, "kernels": len(graph.ops),
            "onnx_lb": onnx_lb, "naive": gp.naive_bytes, "lb": gp.lower_bound_bytes,
            "arena": gp.arena_bytes,
            "ratio": round(gp.arena_bytes / gp.lower_bound_bytes, 4) if gp.lower_bound_bytes
            else 1.0,
            "vs_onnx_lb": round(gp.arena_bytes / onnx_lb, 4) if onnx_lb else 1.0,
            "strategy": gp.strategy, "order": gp.order_name,
            "inplace": len(gp.inplace),
            "concats_eliminated": sum(1 for op in gp.order
                                      if op.kind == "Concat" and gp.is_noop(op)),
            "concats": sum(1 for op in gp.order if op.kind == "Concat"),
            "plan_seconds": round(seconds, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(zoo.ZOO))
    ap.add_argument("-O", dest="level", type=int, default=3)
    ap.add_argument("-o", "--output", default=RESULTS)
    args = ap.parse_args(argv)
    rows = [bench_model(m, args.level) for m in args.models]
    mb = lambda n: f"{n / 2**20:8.2f}"  # noqa: E731
    print(f"{'model':14} {'opt':4} {'kernels':>7} {'onnx_lb':>8} {'naive':>8} {'lb':>8} "
          f"{'arena':>8} {'ratio':>6} {'arena/onnx_lb':>13}  strategy / order   (MiB)")
    for r in rows:
        print(f"{r['model']:14} {r['opt'][:4]:4} {r['kernels']:7d} {mb(r['onnx_lb'])} "
              f"{mb(r['naive'])} {mb(r['lb'])} {mb(r['arena'])} {r['ratio']:6.3f} "
              f"{r['vs_onnx_lb']:13.3f}  {r['strategy']} / {r['order']}"
              f"  concat {r['concats_eliminated']}/{r['concats']}, {r['plan_seconds']:.2f}s")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"unit": "bytes", "models": rows}, f, indent=1)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
