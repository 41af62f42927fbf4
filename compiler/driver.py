"""The compile driver: ONNX → IR → passes → (bundle | ONNX | text IR), plus the report.

`compile()` is the Python twin of the `edgecc` command line; both go through `Options`.
Every output is written to a temporary directory beside the destination and moved into place
only when the whole build succeeded, so a failed build never leaves a half-written directory
and never touches what the user had.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


from .version import __version__
from .errors import UsageError, option
from .ir import Graph
from .pass_registry import PassContext
from .target import TARGETS, Target, host_arch, host_target, make_target
from .report import format_report

EMITS = ("bundle", "onnx", "ir")
# the default accuracy budget of --int8: output SQNR vs the float model on the calibration
# samples; 30 dB keeps classes, decoded text and detection maps (README: int8)
INT8_MIN_SQNR = 30.0
# the default accuracy budget of --decompose: output SQNR on held-out calibration samples;
# 28 dB leaves a margin for 25 dB on other inputs (README: decomposition)
DECOMPOSE_MIN_SQNR = 28.0


@dataclass
class Options:
    target: str = "x86_64"
    opt_level: int = 3
    outdir: str | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    emit: str = "bundle"
    name: str | None = None             # C symbol prefix ("model"); --emit ir/onnx: file stem
    threads: int | None = None
    max_arena: int | None = None
    report: str | None = None
    mcpu: str | None = None
    mattr: list[str] | None = None
    print_after_all: bool = False
    print_after: tuple[str, ...] = ()
    check_numerics: bool = False
    tune: int | None = None             # MetaSchedule trials (backends/tune.py); None = no records
    tuning_cache: str | None = None     # tuning records dir (default ~/.cache/edgecc/tuning)
    int8: bool = False                  # post-training int8 quantization (quantize-int8)
    calib: str | None = None            # calibration samples (compiler/calib_data.py)
    calib_method: str = "mse"
    int8_min_sqnr: float = INT8_MIN_SQNR
    decompose: bool = False             # tensor decomposition (passes/decompose.py)
    decompose_min_sqnr: float = DECOMPOSE_MIN_SQNR
    decompose_budget: float = 0.0       # stop at this fraction of conv/gemm FLOPs removed

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"unknown {option('target', self.target)}; choose one of "
                             f"{', '.join(TARGETS)}")
        if self.opt_level not in (0, 1, 2, 3):
            raise UsageError(f"{option('opt_level', self.opt_level)} is not a level; use 0, 1, 2 "
                             f"or 3")
        if self.emit not in EMITS:
            raise UsageError(f"unknown {option('emit', self.emit)}; choose one of {', '.join(EMITS)}")
        if self.name is not None and (not self.name.isidentifier() or not self.name.isascii()):
            raise UsageError(f"{option('name', self.name)} must be a C identifier (letters, digits, _)")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"{option('threads', self.threads)}: must be at least 1")
        if self.max_arena is not None and self.max_arena < 0:
            raise UsageError(f"{option('max_arena', self.max_arena)}: must be a non-negative number "
                             f"of bytes")
        if self.tune is not None and self.tune < 0:
            raise UsageError(f"{option('tune', self.tune)}: must be a non-negative number of trials")
        from .calibrate import METHODS
        if self.calib is not None and not (self.int8 or self.decompose):
            raise UsageError(f"{option('calib')} is read by {option('int8')} and "
                             f"{option('decompose')} only; add one or drop {option('calib')}")
        if self.int8 and self.calib is None:
            raise UsageError(f"{option('int8')} needs calibration samples: "
                             f"{option('calib')} PATH (a directory of .npy / .npz, or one .npz)")
        if self.calib_method not in METHODS:
            raise UsageError(f"{option('calib_method', self.calib_method)} is not one of "
                             f"{', '.join(METHODS)}")
        if not math.isfinite(self.int8_min_sqnr):
            raise UsageError(f"{option('int8_min_sqnr', self.int8_min_sqnr)} must be a number "
                             f"of dB")
        if not math.isfinite(self.decompose_min_sqnr):
            raise UsageError(f"{option('decompose_min_sqnr', self.decompose_min_sqnr)} must be "
                             f"a number of dB")
        if not 0.0 <= self.decompose_budget <= 1.0:
            raise UsageError(f"{option('decompose_budget', self.decompose_budget)} must be a "
                             f"fraction of the FLOPs between 0 and 1")


def parse_input_shape(spec: str) -> tuple[str, tuple[int, ...]]:
    """`name=d0,d1,...` → (name, dims). Names may contain '=' only before the last '='."""
    name, sep, dims = spec.rpartition("=")
    if not sep or not name:
        raise UsageError(f"--input-shape '{spec}' must look like name=d0,d1,... "
                         f"(e.g. x=1,3,224,224)")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise UsageError(f"--input-shape '{spec}': dims must be integers separated by commas") \
            from None
    if any(d <= 0 for d in shape):
        raise UsageError(f"--input-shape '{spec}': every dim must be positive")
    return name, shape


def model_stem(model_path: str) -> str:
    return Path(model_path).name.rsplit(".", 1)[0] or "model"


def default_outdir(model_path: str, opts: Options) -> str:
    stem = model_stem(model_path)
    if opts.emit == "bundle":
        return f"{stem}.{opts.target}"
    return "."


# ---- the pipeline ------------------------------------------------------------------------

def load_model(model_path: str, input_shapes: dict | None,
               fed_shapes: dict | None = None) -> tuple[Graph, int]:
    """Import an ONNX file: (graph, number of ONNX nodes before import). `fed_shapes`: the
    shapes of arrays the caller will feed (they bind dynamic dims left unbound)."""
    from .onnx_import import import_onnx
    _check_readable(model_path)
    graph = import_onnx(model_path, input_shapes or None, fed_shapes)
    return graph, getattr(graph, "onnx_node_count", len(graph.ops))


def _check_readable(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file")
    if p.is_dir():
        raise UsageError(f"{path}: is a directory, expected an .onnx file")


def resolve_target(opts: Options) -> Target:
    """The build's Target: the CPU named by --mcpu, else this machine's (the one place
    edgecc reads the host)."""
    if opts.mcpu is None:
        return host_target(opts.target, mattr=opts.mattr)
    return make_target(opts.target, mcpu=opts.mcpu, mattr=opts.mattr)


def optimize(graph: Graph, opts: Options, log=None, target: Target | None = None,
             calibration: list | None = None, results: dict | None = None):
    """Run the -O pipeline for `target` (default: resolve_target(opts)), with int8
    quantization when opts.int8 (on `calibration`, sample feeds); returns (graph, pass
    records). Report sections the passes write go into `results`."""
    from .pass_manager import PassManager, pipeline
    target = target or resolve_target(opts)
    # passes that run the graph (calibration) use this machine: the target when it runs
    # here, else the host's own
    runner = target if target.runs_here() else host_target(host_arch())
    ctx = PassContext(stream=log, target=target, calibration=calibration, runner=runner)
    passes = pipeline(opts.opt_level)
    if opts.decompose:
        passes = with_decomposition(passes, opts)
    if opts.int8:
        passes = with_quantization(passes, opts)
    pm = PassManager(passes, print_after_all=opts.print_after_all,
                     print_after=set(opts.print_after), check_numerics=opts.check_numerics,
                     stream=log, ctx=ctx)
    graph = pm.run(graph)
    if results is not None:
        results.update(ctx.results)
    return graph, pm.records


def with_quantization(passes: list, opts: Options) -> list:
    """The pipeline with quantize-int8 after the float rewrites (BN folded, affine folded)
    and before layout and kernel fusion."""
    from .pass_manager import parse_pass
    q = parse_pass(f"quantize-int8{{method={opts.calib_method},"
                   f"min_sqnr={float(opts.int8_min_sqnr)}}}")
    return _before_layout(passes, q)


def _before_layout(passes: list, new) -> list:
    """`passes` with `new` inserted before layout conversion / kernel fusion / dce."""
    names = [p.name for p in passes]
    for before in ("convert-layout", "fuse-kernels", "dce"):
        if before in names:
            i = names.index(before)
            return passes[:i] + [new] + passes[i:]
    return passes + [new]


def with_decomposition(passes: list, opts: Options) -> list:
    """The pipeline with decompose after the float rewrites (BN folded, affine folded) and
    before layout, kernel fusion and quantization (the factors are quantized, laid out and
    fused like any layer)."""
    from .pass_manager import parse_pass
    d = parse_pass(f"decompose{{min_sqnr={float(opts.decompose_min_sqnr)},"
                   f"budget={float(opts.decompose_budget)}}}")
    return _before_layout(passes, d)


def graph_stats(graph: Graph) -> dict:
    from .ops import count_flops
    return {
        "flops": int(sum(count_flops(op) for op in graph.ops)),
        "params_bytes": int(sum(p.type.nbytes for p in graph.params)),
    }


def compile(model: str, target: str = "x86_64", opt_level: int = 3, outdir: str | None = None,
            input_shapes: dict | None = None, **kwargs):
    """Compile an ONNX model. Returns a loaded bundle (emit="bundle") or the written path."""
    opts = Options(target=target, opt_level=opt_level, outdir=outdir,
                   input_shapes=dict(input_shapes or {}), **kwargs)
    return run_compile(str(model), opts)


def run_compile(model_path: str, opts: Options, log=None):
    opts.validate()
    t0 = time.perf_counter()
    target = resolve_target(opts)
    calibration = None
    if opts.calib is not None:
        from .calib_data import check_samples, read_samples, sample_shapes
        raw = read_samples(opts.calib)
        graph, onnx_nodes = load_model(model_path, opts.input_shapes, sample_shapes(raw))
        calibration = check_samples(raw, graph.inputs)
    else:
        graph, onnx_nodes = load_model(model_path, opts.input_shapes)
    if any(op.kind == "DequantizeLinear" for op in graph.ops):   # a quantized model
        from .pass_manager import PassManager, parse_pass
        graph = PassManager([parse_pass("fold-qdq")], ctx=PassContext(target=target)).run(graph)
    before = graph_stats(graph)
    results: dict = {}
    graph, records = optimize(graph, opts, log, target, calibration, results)
    after = graph_stats(graph)
    outdir = opts.outdir or default_outdir(model_path, opts)
    report = {
        "model": Path(model_path).name,
        "target": opts.target,
        "opt_level": opts.opt_level,
        "edgecc_version": __version__,
        "nodes_before": onnx_nodes,
        "nodes_after": len(graph.ops),
        "ops_after": graph.op_counts(),
        "flops_before": before["flops"],
        "flops_after": after["flops"],
        "params_bytes_before": before["params_bytes"],
        "params_bytes_after": after["params_bytes"],
        "passes": records,
        **results,
    }
    if opts.emit == "ir":
        from .textir import save_module
        dest = Path(outdir) / f"{opts.name or model_stem(model_path)}.eir"
        with staged_files(dest.parent) as tmp:
            save_module(graph, tmp / dest.name)
        _maybe_report(opts, report)
        return dest
    if opts.emit == "onnx":
        import onnx
        from .onnx_export import export_onnx
        dest = Path(outdir) / f"{opts.name or model_stem(model_path)}.onnx"
        with staged_files(dest.parent) as tmp:
            onnx.save(export_onnx(graph), str(tmp / dest.name))
        _maybe_report(opts, report)
        return dest
    return build_bundle(graph, opts, target, Path(outdir), report, t0, log)


def build_bundle(graph: Graph, opts: Options, target: Target, outdir: Path, report: dict,
                 t0: float, log=None):
    """Lower the kernels, plan memory, compile, write and link the bundle; return it loaded."""
    from .backends.bundle.writer import plan_bundle, write_bundle
    from .backends.memory.plan import enforce_max_arena
    from .backends.tune import tuning_for
    from .backends.tvm.build import KernelSet
    tuning = None
    if opts.tune is not None or opts.tuning_cache is not None:   # never a hidden input
        tuning = tuning_for(graph, target, opts.tune or 0, opts.tuning_cache, progress=log)
    kernels = KernelSet(graph, target, tuning)
    plan = plan_bundle(graph, kernels, opts.threads, peak_scratch_free=True)
    enforce_max_arena(plan.memory, opts.max_arena, opts.opt_level)   # before the long part
    if plan.scratch_free and log is not None:
        names = ", ".join(graph.ops[i].name or graph.ops[i].kind
                          for i in sorted(plan.scratch_free))
        print(f"memory: {len(plan.scratch_free)} kernel(s) at the arena's peak built without "
              f"scratch: {names}", file=log)
    with tempfile.TemporaryDirectory(prefix="edgecc-build-") as work:
        lib = kernels.compile(work, plan.scratch_free)
        report["kernels"] = sum(1 for i, c in enumerate(lib.calls)
                                if c.kind == "kernel" and not plan.memory.is_noop(graph.ops[i]))
        report.update(plan.memory.report())
        report["arena_live_bytes_per_kernel"] = list(plan.memory.live_bytes)
        report["build_seconds"] = round(time.perf_counter() - t0, 3)
        path = write_bundle(graph, lib, plan, outdir, target, name=opts.name or "model",
                            threads=opts.threads, report=_ordered_report(report))
    if opts.report:
        write_report(_ordered_report(report), Path(opts.report))
    return load(path)


REPORT_KEYS = ("model", "target", "opt_level", "edgecc_version", "nodes_before", "nodes_after",
               "ops_after", "kernels", "flops_before", "flops_after", "params_bytes_before",
               "params_bytes_after", "arena_bytes", "arena_lower_bound_bytes", "naive_bytes",
               "passes")


def _ordered_report(report: dict) -> dict:
    """Contract keys first in their documented order, then any extras."""
    ordered = {k: report[k] for k in REPORT_KEYS if k in report}
    ordered.update((k, v) for k, v in report.items() if k not in ordered)
    return ordered


def load(path):
    """Load a bundle written by edgecc (x86_64 bundles run in-process, arm64 under qemu)."""
    from .backends.bundle.runner import load as load_bundle
    return load_bundle(path)


@contextmanager
def staged_files(dest_dir: Path):
    """Yield a temp dir beside dest_dir; on success move every file in it into dest_dir."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".edgecc-") as tmp:
        yield Path(tmp)
        for src in sorted(Path(tmp).iterdir()):
            os.replace(src, dest_dir / src.name)


def _maybe_report(opts: Options, report: dict) -> None:
    if opts.report:
        write_report(_ordered_report(report), Path(opts.report))


def write_report(report: dict, path: Path) -> None:
    path.write_text(format_report(report))
