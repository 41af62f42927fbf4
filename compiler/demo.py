"""The main job on a bundled example: compile for x86_64 and arm64, run both, compare with
onnxruntime, print the report.

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
from .report import format_report


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
    if name.startswith("ppocr"):                      # a real image of text, not noise
        (input_name, shape), = shapes.items()
        feeds = {input_name: zoo.text_image(shape[2], shape[3])}
    want = onnxruntime_outputs(str(model), feeds)
    print(f"model {name}: {model}  inputs {', '.join(f'{k}={list(v.shape)}' for k, v in feeds.items())}")
    worst = 0.0
    for target in ("x86_64", "arm64"):
        t0 = time.perf_counter()
        art = edgecc.compile(model, target=target, opt_level=opt_level,
                             outdir=str(work / f"{name}.{target}"), input_shapes=shapes)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = art.run(feeds)
        t_run = time.perf_counter() - t0
        how = "in-process" if target == "x86_64" else "under qemu-aarch64"
        print(f"\n[{target}] built in {t_build:.1f}s -> {art.path}; ran {how} in {t_run:.2f}s")
        for out_name, g, w in zip(art.output_names, got, want):
            abs_err, rel, _ = compare(g, w)
            worst = max(worst, rel)
            print(f"  {out_name}: {list(g.shape)} max abs err vs onnxruntime {abs_err:.3g} "
                  f"(rel to scale {rel:.3g})")
    report = json.loads((Path(art.path) / "report.json").read_text())
    print("\nreport.json (arm64):")
    print(format_report(report), end="")
    ok = worst <= 1e-3
    print(f"\n{'OK' if ok else 'MISMATCH'}: worst error relative to output scale {worst:.3g}")
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
