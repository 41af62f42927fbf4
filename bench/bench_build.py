"""Build time and bundle digests per model: what a refactoring must leave unchanged.

    python bench/bench_build.py                                  # the 11 zoo models, x86_64
    python bench/bench_build.py --models squeezenet --targets x86_64,arm64 --mcpu x86-64-v3
    python bench/bench_build.py --compare bench/results/build_before.json

Per model and target: the build's wall time (import, passes, memory planning, TVM lowering and
compile, linking) and a sha256 of each file of the bundle that a device receives or that
generated it (kernels.o, model.c, model.h, the weights, libmodel.a, libmodel.so). report.json
is left out (it records timings). `--compare OLD.json` prints, per model, whether the bundle is
byte-identical to the one recorded in OLD.json and the build time before/after.
Results go to bench/results/build.json (or -o FILE).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402

import edgecc  # noqa: E402
from edgecc import zoo  # noqa: E402

DIGESTED = ("kernels.o", "model.c", "model.h", "model_weights.bin", "libmodel.a", "libmodel.so")
DEFAULT_MODELS = list(zoo.ZOO)


def digests(bundle: Path) -> dict[str, str]:
    return {name: hashlib.sha256((bundle / name).read_bytes()).hexdigest()[:16]
            for name in DIGESTED if (bundle / name).is_file()}


def build_one(model: str, target: str, mcpu: str | None, workdir: Path, cache: Path) -> dict:
    path = zoo.materialize(model, cache)
    out = workdir / f"{model}.{target}"
    t0 = time.perf_counter()
    edgecc.compile(str(path), target=target, opt_level=3, outdir=str(out),
                   input_shapes=zoo.default_input_shapes(model),
                   mcpu=mcpu if target == "x86_64" else None)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "digests": digests(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--targets", default="x86_64")
    ap.add_argument("--mcpu", default=None, help="x86_64 CPU (default: the host's level)")
    ap.add_argument("--compare", default=None, help="an earlier result JSON to compare with")
    ap.add_argument("-o", "--output", default=str(Path(__file__).parent / "results" / "build.json"))
    args = ap.parse_args(argv)
    cache = zoo.default_cache_dir()
    results = {"machine": machine_info(), "mcpu": args.mcpu, "builds": {}}
    old = json.loads(Path(args.compare).read_text())["builds"] if args.compare else {}
    with tempfile.TemporaryDirectory(prefix="edgecc-bench-build-") as work:
        for model in args.models.split(","):
            for target in args.targets.split(","):
                key = f"{model}/{target}"
                r = build_one(model, target, args.mcpu, Path(work), cache)
                results["builds"][key] = r
                line = f"{key:28s} {r['seconds']:7.2f} s"
                if key in old:
                    same = old[key]["digests"] == r["digests"]
                    diff = [k for k in r["digests"] if old[key]["digests"].get(k) != r["digests"][k]]
                    line += (f"   before {old[key]['seconds']:7.2f} s  "
                             f"{'byte-identical' if same else 'DIFFERS: ' + ', '.join(diff)}")
                print(line, flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
