"""The standalone bundle: C host code + our small C runtime + TVM kernels + weights, built.

    kernels = KernelSet(graph, target, tuning)           # backends/tvm/build.py
    plan = plan_bundle(graph, kernels, threads)          # arena offsets incl. kernel scratch
    lib = kernels.compile(workdir, plan.scratch_free)
    path = write_bundle(graph, lib, plan, outdir, target, name="model", report={...})

`<outdir>/` then holds (for name "model"):
    model.h            the C API (CONTRACT.md): sizes, shapes, dtypes, model_run, threads
    model.c            generated host code; edgecc_runtime.h + rt_*.c: the runtime
    kernels.o          TVM-compiled kernels (prebuilt for the target)
    model_weights.bin  the weights, linked in through model_weights.S (.incbin)
    libmodel.a         static library: the code as one object whose only globals are the
                       model_* API, plus the weights member (symbol model_weights)
    libmodel.so        shared library (exports only the API)
    Makefile, CMakeLists.txt, model.map   how to rebuild / link
    example.c          a runner over raw files (the qemu path uses it; the user's template)
    bundle.json        metadata for edgecc.load (names, shapes, dtypes, target)
    report.json        when `report` is given

Everything is written to a temporary directory beside `outdir` and moved into place only when
the build succeeded; an existing `outdir` is replaced only if it is empty or an earlier bundle.
The libraries are built by the bundle's own Makefile, so the shipped recipe is the tested one.
The bytes depend only on the inputs (no timestamps or paths; `ar D`; fixed CFLAGS).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgecc.errors import UsageError, option
from edgecc.ir import Graph
from edgecc.report import format_report

from . import csrc as C
from edgecc.backends.bundle.program import (BundlePlan, Program, make_program, plan_bundle,
                                            weights_blob)
from edgecc.target import Target

__all__ = ["write_bundle", "plan_bundle", "BundlePlan", "cross_prefix", "RUNTIME_DIR"]

RUNTIME_DIR = Path(__file__).parent / "runtime"


def write_bundle(graph: Graph, kernel_library, plan: BundlePlan, outdir, target: Target,
                 name: str = "model", threads: int | None = None,
                 report: dict | None = None) -> Path:
    """Write and build the bundle of `graph` into `outdir` (replacing it only on success):
    `kernel_library` is KernelSet.compile(..., plan.scratch_free) for `target`."""
    if not (name.isidentifier() and name.isascii()):
        raise UsageError(f"{option('name', name)} must be a C identifier (letters, digits, _)")
    outdir = Path(outdir).absolute()
    _check_replaceable(outdir)
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    except OSError as e:
        raise UsageError(f"cannot write the bundle beside {outdir}: {e.strerror}; "
                         f"choose another -o") from None
    try:
        layout = make_program(graph, kernel_library, plan, name, threads)
        _write_sources(tmp, graph, layout, kernel_library, target)
        _build(tmp, layout, target)
        if report is not None:
            (tmp / "report.json").write_text(format_report(report))
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return outdir


def cross_prefix(target: Target) -> str:
    """Tool prefix for the target's binutils/gcc ('' when building for this host)."""
    return "" if target.is_host else f"{target.triple}-"


def _write_sources(d: Path, graph: Graph, lay: Program, lib, target: Target) -> None:
    n = lay.name
    (d / "model.h").write_text(C.render_header(lay))
    (d / "model.c").write_text(C.render_model_c(lay))
    (d / "example.c").write_text(C.render_example(lay))
    (d / f"{n}_weights.S").write_text(C.render_weights_asm(lay))
    with open(d / f"{n}_weights.bin", "wb") as f:
        for chunk in weights_blob(graph, lay):
            f.write(chunk)
    for src in (C.RUNTIME_HEADER,) + C.RUNTIME_SOURCES:
        shutil.copyfile(RUNTIME_DIR / src, d / src)
    kernels = []
    objects = list(getattr(lib, "objects", []) or [])
    for i, obj in enumerate(objects):
        dst = "kernels.o" if len(objects) == 1 else f"kernels_{i}.o"
        shutil.copyfile(obj, d / dst)
        kernels.append(dst)
    (d / "Makefile").write_text(C.render_makefile(lay, cross_prefix(target), kernels))
    (d / f"{n}.map").write_text(C.render_version_script(lay))
    (d / f"{n}_profile.map").write_text(C.render_version_script(lay, profile=True))
    (d / "CMakeLists.txt").write_text(C.render_cmake(lay, kernels))
    (d / "bundle.json").write_text(C.render_bundle_json(lay))


def _build(d: Path, lay: Program, target: Target) -> None:
    """Run the bundle's own Makefile (so the shipped build recipe is the one we tested)."""
    cross = cross_prefix(target)
    for tool in ["make"] + [cross + t for t in ("gcc", "ld", "objcopy", "ar")]:
        if shutil.which(tool) is None:
            raise UsageError(f"building a {target.name} bundle needs '{tool}' on PATH"
                             + (f" (Debian: apt install gcc-{target.triple.replace('_', '-')})"
                                if cross and tool != "make" else ""))
    n = lay.name
    cmd = ["make", "-s", "-j2", "-C", str(d), f"CROSS={cross}", "CFLAGS=-O2",
           "WERROR=-Werror", f"lib{n}.a", f"lib{n}.so"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        raise RuntimeError(f"building the bundle failed ({' '.join(cmd)}):\n"
                           f"{proc.stdout}{proc.stderr}")
    subprocess.run(["make", "-s", "-C", str(d), "clean"], check=True, capture_output=True)


def _check_replaceable(dest: Path) -> None:
    """Only an empty directory or an earlier bundle may be replaced: never the user's files."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"{dest}: exists and is not a directory; choose another -o")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / "bundle.json").is_file():
        raise UsageError(f"{dest}: exists and is not an edgecc bundle (no bundle.json); "
                         f"choose another -o or remove it")


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Swap a finished directory into place (the old one, if any, is removed after)."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
