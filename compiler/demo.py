"""The main job on a bundled example: compile for x86_64 and arm64, run both, compare with
onnxruntime, print a short summary (the full report is report.json in each bundle).

    python3 -m edgecc.demo [zoo model name] [-O LEVEL] [-o OUTDIR]

Default model: PP-OCR's text direction classifier (from ../shared/models) on a rendered image of
text; if the shared models are not present, SqueezeNet from the onnx wheel's model zoo.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


from . import zoo
from .check import onnxruntime_outputs
from .numerics import compare
from .errors import EdgeccError


def _default_model() -> str:
    try:
        if Path(zoo.source_path("ppocr_cls")).is_file():
            return "ppocr_cls"
    except EdgeccError:
        pass
    return "squeezenet"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgecc.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help=f"one of {', '.join(zoo.ZOO)}")
    ap.add_argument("-O", dest="opt_level", type=int, default=3)
    ap.add_argument("-o", "--outdir", default=None, help="where bundles go (default: temp dir)")
    args = ap.parse_args(argv)
    name = args.model or _default_model()
    work = Path(args.outdir or tempfile.mkdtemp(prefix="edgecc-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(name, args.opt_level, work)
    except EdgeccError as e:
        print(f"edgecc demo: error: {e.message}", file=sys.stderr)
        return e.exit_code


def _run(name: str, opt_level: int, work: Path) -> int:
    import edgecc
    model = zoo.materialize(name, work / "models")
    shapes = zoo.default_input_shapes(name)
    feeds = zoo.sample_inputs(name, seed=0)
    what = "seeded random input"
    if name.startswith("ppocr"):                      # a real image of text, not noise
        (input_name, shape), = shapes.items()
        feeds = {input_name: zoo.text_image(shape[2], shape[3])}
        what = "a rendered line of text"
    want = onnxruntime_outputs(str(model), feeds)
    builds, errors, reports = {}, {}, {}
    for target in ("x86_64", "arm64"):
        print(f"building and running {name} for {target} ...", flush=True)
        t0 = time.perf_counter()
        art = edgecc.compile(model, target=target, opt_level=opt_level,
                             outdir=str(work / f"{name}.{target}"), input_shapes=shapes)
        builds[target] = (time.perf_counter() - t0, Path(art.path))
        got = art.run(feeds)
        errors[target] = max(compare(g, w).rel for g, w in zip(got, want))
        reports[target] = json.loads((Path(art.path) / "report.json").read_text())
    r = reports["x86_64"]
    inputs = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
    worst = max(errors.values())
    ok = worst <= 1e-3
    lines = [
        ("model", f"{Path(model).name} ({name}); input {inputs}: {what}"),
        ("graph", f"{r['nodes_before']} ONNX nodes -> {r['kernels']} kernels at -O{opt_level}"),
        ("FLOPs", f"{_si(r['flops_before'])} -> {_si(r['flops_after'])} per inference"),
        ("weights", f"{_kib(r['params_bytes_after'])}, linked into the library"),
        ("arena", f"{_kib(r['arena_bytes'])} (lower bound {_kib(r['arena_lower_bound_bytes'])},"
                  f" one buffer per tensor {_kib(r['naive_bytes'])})"),
        ("build", ", ".join(f"{t} {secs:.1f} s" for t, (secs, _) in builds.items())),
        ("error", ", ".join(f"{t} {e:.2g}" for t, e in errors.items()) +
                  " (max |bundle - onnxruntime| / max |onnxruntime|; arm64 ran under qemu)"),
        ("bundles", ", ".join(str(path) for _, path in builds.values())),
        ("report", str(builds["x86_64"][1] / "report.json")),
    ]
    print()
    for key, text in lines:
        print(f"  {key:<8} {text}")
    print(f"\n{'OK' if ok else 'MISMATCH'}: the bundles agree with onnxruntime"
          if ok else f"\nMISMATCH: worst error {worst:.3g} > 1e-3")
    return 0 if ok else 3


def _si(flops: int) -> str:
    for unit, div in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= div:
            return f"{flops / div:.3g} {unit}"
    return f"{flops} FLOP"


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


if __name__ == "__main__":
    sys.exit(main())
