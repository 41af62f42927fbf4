"""The `edgecc` command line (see CONTRACT.md): compile, `run` and `check`.

Exit codes: 0 ok, 1 usage, 2 unsupported/invalid model, 3 numeric mismatch, 4 resource limit,
70 internal compiler error (a bug in edgecc: please report it with the model).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .version import __version__
from .errors import UsageError, run_guarded

COMPILE_EPILOG = """\
examples:
  edgecc model.onnx --target arm64 -O3                 bundle in ./model.arm64/
  edgecc model.onnx --input-shape x=1,3,320,320 -o out  bind a dynamic input, choose outdir
  edgecc model.onnx --emit ir -o ir/                    write ir/model.eir (+ .weights.npz)
  edgecc run model.x86_64 --input x=x.npy               run a bundle, write <output>.npy
  edgecc check model.onnx                               reference executor vs onnxruntime
  edgecc --list-passes                                  the passes of each -O level

exit codes: 0 ok, 1 usage error, 2 unsupported or invalid model, 3 numeric check failed,
            4 resource limit exceeded (--max-arena), 70 internal error (please report)
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors; the contract says 1."""

    def error(self, message):
        raise UsageError(f"{message}\n(see '{self.prog} --help')")


def _compile_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgecc", description="Compile an ONNX model into a standalone bundle "
                "(library + header + static arena) for x86_64 or arm64.",
                epilog=COMPILE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="the .onnx model to compile")
    p.add_argument("--target", default="x86_64", choices=["x86_64", "arm64"],
                   help="code generation target (default x86_64)")
    for level in range(4):
        p.add_argument(f"-O{level}", dest="opt_level", action="store_const", const=level,
                       help={0: "import only", 1: "clean-up passes", 2: "+ fusion",
                             3: "+ layout and everything profitable (default)"}[level])
    p.set_defaults(opt_level=3)
    p.add_argument("-o", "--outdir", help="output directory (default <model stem>.<target>/ "
                   "for bundles, . for --emit ir/onnx)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="bind an input's dynamic dims; repeatable")
    p.add_argument("--emit", default="bundle", choices=["bundle", "onnx", "ir"],
                   help="what to write (default bundle)")
    p.add_argument("--name", default=None,
                   help="C symbol prefix (default model); with --emit ir/onnx the file name "
                        "(default the model's stem)")
    p.add_argument("--threads", type=int, help="default thread count of the bundle")
    p.add_argument("--max-arena", type=int, metavar="BYTES",
                   help="fail (exit 4) if the memory plan needs more arena than this")
    p.add_argument("--report", help="report path (default <outdir>/report.json)")
    p.add_argument("--mcpu", help="target CPU (default: host CPU for x86_64, generic for arm64)")
    p.add_argument("--mattr", action="append", help="target features, e.g. +dotprod; repeatable")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-after", action="append", default=[], metavar="PASS",
                   help="print the IR after the named pass; repeatable")
    p.add_argument("--check-numerics", action="store_true",
                   help="check every pass against the reference executor (slow)")
    p.add_argument("--tune", type=int, metavar="TRIALS",
                   help="tune the kernels holding 80%% of the FLOPs with this many MetaSchedule "
                   "trials on this CPU (x86_64 host only) and build with the tuning cache's "
                   "records; --tune 0 reuses the records without new trials")
    p.add_argument("--tuning-cache", metavar="DIR", help="build with the tuning records in DIR "
                   "(default with --tune: $XDG_CACHE_HOME/edgecc/tuning); without --tune or "
                   "--tuning-cache no records are read, so builds depend only on their flags")
    p.add_argument("--int8", action="store_true",
                   help="post-training int8 quantization on the --calib samples (layers whose "
                        "loss would break --int8-min-sqnr stay float)")
    p.add_argument("--calib", metavar="PATH",
                   help="calibration samples: a directory of .npy (one sample each, one-input "
                        "models), a directory of .npz keyed by input name, or one .npz keyed "
                        "by input name with a leading sample axis")
    p.add_argument("--calib-method", default="mse",
                   choices=["minmax", "percentile", "entropy", "mse"],
                   help="how activation ranges are chosen (default mse)")
    p.add_argument("--int8-min-sqnr", type=float, default=None, metavar="DB",
                   help="accuracy budget: output SQNR vs the float model on the calibration "
                        "samples (default 30 dB)")
    p.add_argument("--decompose", action="store_true",
                   help="tensor decomposition: low-rank layers become thin factors (Tucker-2, "
                        "SVD) where edgecc's kernels run them faster; with --calib fitted to "
                        "the data within --decompose-min-sqnr, without from the weights alone")
    p.add_argument("--decompose-min-sqnr", type=float, default=None, metavar="DB",
                   help="accuracy budget of --decompose: output SQNR vs the undecomposed model "
                        "on held-out calibration samples (default 28 dB)")
    p.add_argument("--decompose-budget", type=float, default=None, metavar="FLOPS_FRACTION",
                   help="stop --decompose once this fraction of the conv/gemm FLOPs is removed "
                        "(default: as much as the accuracy budget allows)")
    p.add_argument("--list-passes", action="store_true", help="print the passes of each -O level")
    p.add_argument("--version", action="version", version=f"edgecc {__version__}")
    return p


def _run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgecc run", description="Run a compiled bundle (arm64 bundles run under "
                "qemu-aarch64) and write each output to <output-dir>/<output name>.npy.")
    p.add_argument("bundle", help="a bundle directory written by edgecc")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input array; repeatable (one per model input)")
    p.add_argument("--output-dir", default=".", help="where to write outputs (default .)")
    return p


def _check_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgecc check", description="Import a model, run the reference executor "
                "and onnxruntime on the same inputs (seeded random unless given) and print the "
                "per-output error. Exit 3 when an output differs by more than --tolerance "
                "relative to the output's scale.")
    p.add_argument("model", help="the .onnx model")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="max error relative to the output's max |value| (default 1e-4)")
    return p


def _input_shapes(specs: list[str]) -> dict:
    from .driver import parse_input_shape
    shapes = {}
    for spec in specs:
        name, shape = parse_input_shape(spec)
        if name in shapes:
            raise UsageError(f"--input-shape given twice for '{name}'")
        shapes[name] = shape
    return shapes


def _load_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    arrays = {}
    for spec in specs:
        name, sep, path = spec.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--input '{spec}' must look like name=file.npy")
        if not Path(path).is_file():
            raise UsageError(f"--input {name}: no such file '{path}'")
        arrays[name] = _read_npy(path, f"--input {name}")
    return arrays


NPY_MAGIC = b"\x93NUMPY"


def _read_npy(path: str, what: str) -> np.ndarray:
    """The array in a .npy file; a plain UsageError for anything else (an .npz, an image, a
    pickle, a truncated file)."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        kind = "an .npz archive" if head.startswith(b"PK") else "not a .npy file"
        raise UsageError(f"{what}: '{path}' is {kind}; give one array saved with numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):        # an object array: numpy would need to unpickle it
            raise UsageError(f"{what}: '{path}' holds Python objects, not numbers; save a "
                             f"numeric array") from None
        raise UsageError(f"{what}: '{path}' is a damaged .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise UsageError(f"{what}: '{path}' is a damaged .npy file ({e})") from None


def _cmd_compile(argv: list[str]) -> int:
    from .driver import Options, run_compile
    args = _compile_parser().parse_args(argv)
    if args.list_passes:
        from .pass_manager import describe_pipelines
        print(describe_pipelines())
        return 0
    if not args.model:
        raise UsageError("no model given (see 'edgecc --help')")
    opts = Options(target=args.target, opt_level=args.opt_level, outdir=args.outdir,
                   input_shapes=_input_shapes(args.input_shape), emit=args.emit, name=args.name,
                   threads=args.threads, max_arena=args.max_arena, report=args.report,
                   mcpu=args.mcpu, mattr=args.mattr, print_after_all=args.print_after_all,
                   print_after=tuple(args.print_after), check_numerics=args.check_numerics,
                   tune=args.tune, tuning_cache=args.tuning_cache, int8=args.int8,
                   calib=args.calib, calib_method=args.calib_method,
                   decompose=args.decompose,
                   **({} if args.int8_min_sqnr is None else
                      {"int8_min_sqnr": args.int8_min_sqnr}),
                   **({} if args.decompose_min_sqnr is None else
                      {"decompose_min_sqnr": args.decompose_min_sqnr}),
                   **({} if args.decompose_budget is None else
                      {"decompose_budget": args.decompose_budget}))
    result = run_compile(args.model, opts, log=sys.stderr)
    where = getattr(result, "path", result)
    print(f"edgecc: wrote {where}")
    return 0


def _cmd_run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    from .driver import load
    bundle = load(args.bundle)
    inputs = _load_inputs(args.input)
    outputs = bundle.run(inputs)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, array in zip(bundle.output_names, outputs):
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        np.save(out_dir / f"{safe}.npy", array)
        print(f"{name}: {list(array.shape)} {array.dtype} -> {out_dir / (safe + '.npy')}")
    return 0


def _cmd_check(argv: list[str]) -> int:
    from .check import check_model
    args = _check_parser().parse_args(argv)
    return check_model(args.model, _input_shapes(args.input_shape), _load_inputs(args.input),
                       seed=args.seed, tolerance=args.tolerance)


def _dispatch(argv: list[str]) -> int:
    commands = {"run": _cmd_run, "check": _cmd_check}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return _cmd_compile(argv)


def main(argv: list[str] | None = None) -> int:
    return run_guarded("edgecc", _dispatch, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
