"""The differential fuzzer, long run: random ONNX graphs (tests/fuzz/generate.py) compiled by
edgecc and checked against onnxruntime (tests/fuzz/oracle.py).

    python bench/fuzz.py --count 2000                     # graphs 0..1999, all -O levels
    python bench/fuzz.py --seeds 1234 --shrink            # one graph; reduce it if it fails
    python bench/fuzz.py --count 200 --arm64-every 5 --mcpu x86-64-v3

Graph i is always the same graph (seeded): a failure is reproduced by its seed. Each graph is
built at the -O levels given (default: level i % 4, so every level gets a quarter of the
graphs; --all-levels for all four), for x86_64 here and, every k-th graph, for arm64 under
qemu. Counts per verdict go to stdout and bench/results/fuzz.json; failing graphs (shrunk
with --shrink) are written to --save DIR as <seed>.onnx + <seed>.npz, the form
tests/fuzz_corpus/ keeps as regression tests.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.fuzz.generate import random_model  # noqa: E402
from tests.fuzz.oracle import check  # noqa: E402
from tests.fuzz.shrink import shrink  # noqa: E402

FAILING = ("wrong", "crash")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", help="comma-separated seeds instead of --start/--count")
    ap.add_argument("--all-levels", action="store_true", help="-O0..-O3 for every graph")
    ap.add_argument("--arm64-every", type=int, default=0, help="also arm64 every k-th graph")
    ap.add_argument("--mcpu", default=None, help="x86_64 CPU to build for (default host)")
    ap.add_argument("--shrink", action="store_true", help="reduce failing graphs")
    ap.add_argument("--save", default=None, help="directory for failing graphs")
    ap.add_argument("-o", "--output", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else \
        list(range(args.start, args.start + args.count))
    counts, failures, refusals = collections.Counter(), [], collections.Counter()
    departs = 0
    t0 = time.perf_counter()
    for n, seed in enumerate(seeds):
        model, feeds = random_model(seed)
        levels = (0, 1, 2, 3) if args.all_levels else (seed % 4,)
        targets = ("x86_64", "arm64") if args.arm64_every and n % args.arm64_every == 0 \
            else ("x86_64",)
        verdicts = check(model, feeds, levels, targets, mcpu=args.mcpu)
        for v in verdicts:
            counts[v.status] += 1
            departs += v.detail.startswith("onnxruntime departs")
            if v.status == "refused":
                refusals[v.detail.split(": ", 2)[-1][:100]] += 1
        bad = [v for v in verdicts if v.status in FAILING]
        if bad:
            v = bad[0]
            print(f"seed {seed}: {v.status} at -O{v.level} {v.target}: {v.detail}", flush=True)
            failures.append({"seed": seed, "status": v.status, "level": v.level,
                             "target": v.target, "detail": v.detail})
            if args.save:
                _save(args, seed, model, feeds, v)
        if (n + 1) % 25 == 0:
            print(f"[{n + 1}/{len(seeds)}] {dict(counts)} {time.perf_counter() - t0:.0f} s",
                  flush=True)
    graphs = len(seeds)
    result = {"graphs": graphs, "builds": sum(counts.values()), "verdicts": dict(counts),
              "onnxruntime_departs_from_exact": departs,
              "failing_graphs": len(failures), "failures": failures,
              "refusals": dict(refusals), "seconds": round(time.perf_counter() - t0, 1),
              "seeds": [seeds[0], seeds[-1]] if not args.seeds else seeds}
    print(json.dumps({k: v for k, v in result.items() if k != "failures"}, indent=1))
    if not args.seeds:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 1 if failures else 0


def _save(args, seed, model, feeds, verdict):
    out = Path(args.save)
    out.mkdir(parents=True, exist_ok=True)
    if args.shrink:
        def still_fails(m, f):
            return any(v.status == verdict.status for v in
                       check(m, f, (verdict.level,), (verdict.target,), mcpu=args.mcpu))
        model = shrink(model, feeds, still_fails)
        names = {v.name for v in model.graph.input}
        feeds = {k: a for k, a in feeds.items() if k in names}
        print(f"  shrunk to {len(model.graph.node)} node(s): "
              f"{[n.op_type for n in model.graph.node]}", flush=True)
    onnx.save(model, out / f"{seed}.onnx")
    np.savez(out / f"{seed}.npz", **feeds)


if __name__ == "__main__":
    sys.exit(main())
