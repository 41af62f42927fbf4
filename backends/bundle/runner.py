"""Loading and running a bundle directory written by backends/bundle.py.

    b = load("squeezenet.x86_64/")            # reads bundle.json
    outs = b.run({"data_0": x})               # or b.run([x]); list of arrays, output order
    b.input_names, b.output_names, b.target

Bundles for this host (x86_64 on x86_64) run in-process: lib<id>.so through ctypes, with one
64-byte aligned arena allocated at load; `run` copies an input only when it is not already
C-contiguous, 64-byte aligned and of the right dtype. Other targets (arm64) run under
`qemu-aarch64`: example.c is linked statically against lib<id>.a with the target's gcc once per
load, and tensors go through raw files.

`poison_arena=True` fills the arena with 0xFF bytes (NaN as f16/f32/f64) before every run:
a bundle that reads memory it did not write first then gives different outputs.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.dtypes import dtype_to_numpy
from edgecc.errors import EdgeccError, UsageError
from edgecc.target import host_arch

ALIGN = 64
POISON = 0xFF
QEMU = {"arm64": ("qemu-aarch64", "/usr/aarch64-linux-gnu")}


class BundleRunError(EdgeccError):
    """The compiled code reported a failure while running (exit 3: no trustworthy result)."""
    exit_code = 3


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int


def load(outdir, poison_arena: bool = False, profile: bool = False) -> "Bundle":
    """`profile`: load lib<id>_profile.so (built by the bundle's `make profile` when missing),
    whose runs also time every step: Bundle.step_times()."""
    path = Path(outdir)
    meta_path = path / "bundle.json"
    if not meta_path.is_file():
        raise UsageError(f"{path}: not an edgecc bundle (no bundle.json); build one with "
                         f"`edgecc model.onnx -o {path}`")
    meta = json.loads(meta_path.read_text())
    return Bundle(path, meta, poison_arena, profile)


def aligned_empty(nbytes: int) -> np.ndarray:
    """A uint8 array of nbytes whose data is ALIGN-byte aligned."""
    raw = np.empty(nbytes + ALIGN, np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip:skip + nbytes]


def host_target() -> str | None:
    """This machine's architecture as an edgecc target name (bundles of it run in-process)."""
    return host_arch()


class Bundle:
    def __init__(self, path: Path, meta: dict, poison_arena: bool = False,
                 profile: bool = False):
        self.path = Path(path)
        self.name = meta["name"]
        self.target = meta["target"]
        self.arena_bytes = int(meta["arena_bytes"])
        self.poison_arena = poison_arena
        spec = lambda d: TensorSpec(d["name"], np.dtype(dtype_to_numpy(d["dtype"])),  # noqa: E731
                                    tuple(d["shape"]), int(d["bytes"]))
        self.inputs = [spec(d) for d in meta["inputs"]]
        self.outputs = [spec(d) for d in meta["outputs"]]
        self.in_process = self.target == host_target()
        self._threads: int | None = None
        self.profiled = profile
        if self.in_process:
            so = _profile_library(self.path, self.name) if profile else \
                self.path / f"lib{self.name}.so"
            self._lib = _load_shared(so, self.name, profile)
            self._arena = aligned_empty(max(self.arena_bytes, 1))
        elif profile:
            raise UsageError(f"{self.path}: profiling runs the bundle in-process; this "
                             f"{self.target} bundle runs under emulation")
        else:
            self._exe = None
            self._tmp = tempfile.mkdtemp(prefix="edgecc-run-")
            weakref.finalize(self, shutil.rmtree, self._tmp, True)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def set_num_threads(self, n: int | None) -> None:
        """Threads for the following runs (None: back to the bundle's default)."""
        self._threads = n
        if self.in_process:
            self._lib.set_num_threads(n or 0)

    def num_threads(self) -> int:
        """Threads the next run uses (emulated bundles: what was set, 0 = the C default)."""
        if self.in_process:
            return self._lib.get_num_threads()
        env = os.environ.get("EDGECC_NUM_THREADS", "")
        return self._threads or (int(env) if env.isdigit() else 0)

    def step_times(self) -> list[tuple[str, float]]:
        """(step, seconds) for every step (kernel launch or copy) in run order, summed over
        the runs since the last reset_step_times() (load(..., profile=True) only)."""
        if not self.profiled:
            raise UsageError("step_times() needs a bundle loaded with profile=True")
        times = []
        for i in range(self._lib.profile_steps()):
            what = ctypes.c_char_p()
            seconds = self._lib.profile_step(i, ctypes.byref(what))
            times.append((what.value.decode(), seconds))
        return times

    def reset_step_times(self) -> None:
        if not self.profiled:
            raise UsageError("reset_step_times() needs a bundle loaded with profile=True")
        self._lib.profile_reset()

    def __repr__(self) -> str:
        how = "in-process" if self.in_process else "emulated"
        return (f"Bundle({str(self.path)!r}, target={self.target}, {how}, "
                f"inputs={self.input_names}, outputs={self.output_names})")

    def run(self, inputs) -> list[np.ndarray]:
        arrays = self._check_inputs(inputs)
        if self.in_process:
            return self._run_in_process(arrays)
        return self._run_emulated(arrays)

    __call__ = run

    # ---- inputs ----------------------------------------------------------------------------
    def _check_inputs(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(self.input_names))
            missing = [n for n in self.input_names if n not in inputs]
            if unknown or missing:
                raise UsageError(f"bundle '{self.path}': inputs are {self.input_names}; "
                                 + (f"unknown {unknown}" if unknown else "")
                                 + ("; " if unknown and missing else "")
                                 + (f"missing {missing}" if missing else ""))
            values = [inputs[n] for n in self.input_names]
        else:
            values = list(inputs)
            if len(values) != len(self.inputs):
                raise UsageError(f"bundle '{self.path}' takes {len(self.inputs)} input(s) "
                                 f"{self.input_names}, got {len(values)}")
        out = []
        for spec, v in zip(self.inputs, values):
            a = np.asarray(v)
            if a.shape != spec.shape:
                raise UsageError(f"input '{spec.name}': shape {list(a.shape)}, the bundle was "
                                 f"built for {list(spec.shape)} (rebuild with --input-shape)")
            if a.dtype != spec.dtype:
                if not np.can_cast(a.dtype, spec.dtype, "same_kind"):
                    raise UsageError(f"input '{spec.name}': dtype {a.dtype}, expected "
                                     f"{spec.dtype}")
                a = a.astype(spec.dtype)
            out.append(a)
        return out

    # ---- in-process (host target) ----------------------------------------------------------
    def _run_in_process(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        ins = [_aligned(a) for a in arrays]
        outs = [aligned_empty(s.nbytes).view(s.dtype).reshape(s.shape) for s in self.outputs]
        in_ptrs = (ctypes.c_void_p * max(len(ins), 1))(*[_pointer(a) for a in ins])
        out_ptrs = (ctypes.c_void_p * max(len(outs), 1))(*[_pointer(a) for a in outs])
        if self.poison_arena:
            self._arena.fill(POISON)
        rc = self._lib.run(in_ptrs, out_ptrs, self._arena.ctypes.data)
        if rc != 0:
            msg = self._lib.last_error().decode(errors="replace")
            raise BundleRunError(f"bundle '{self.path}': {self.name}_run returned {rc}: {msg}")
        return outs

    # ---- emulated (qemu-user) --------------------------------------------------------------
    def _example(self) -> str:
        if self._exe is None:
            triple = {"arm64": "aarch64-linux-gnu"}.get(self.target)
            qemu = QEMU.get(self.target)
            cc = f"{triple}-gcc" if triple else None
            for tool in (cc, qemu and qemu[0]):
                if tool is None or shutil.which(tool) is None:
                    raise UsageError(f"running a {self.target} bundle on this host needs "
                                     f"{tool or 'an emulator'} (Debian: qemu-user, "
                                     f"gcc-aarch64-linux-gnu)")
            exe = os.path.join(self._tmp, "example")
            cmd = [cc, "-std=c99", "-O2", "-I", str(self.path), str(self.path / "example.c"),
                   str(self.path / f"lib{self.name}.a"), "-static", "-lpthread", "-lm",
                   "-o", exe]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BundleRunError(f"linking example.c for {self.target} failed:\n"
                                     f"{proc.stderr}")
            self._exe = exe
        return self._exe

    def _run_emulated(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        exe = self._example()
        qemu, sysroot = QEMU[self.target]
        run_dir = tempfile.mkdtemp(dir=self._tmp)
        try:
            in_files = [os.path.join(run_dir, f"in{i}.raw") for i in range(len(arrays))]
            out_files = [os.path.join(run_dir, f"out{i}.raw") for i in range(len(self.outputs))]
            for a, f in zip(arrays, in_files):
                np.ascontiguousarray(a).tofile(f)
            cmd = [qemu, "-L", sysroot, exe]
            if self._threads:
                cmd += ["-t", str(self._threads)]
            if self.poison_arena:
                cmd += ["-p", "1"]
            proc = subprocess.run(cmd + in_files + out_files, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BundleRunError(f"bundle '{self.path}' under {qemu} failed "
                                     f"(exit {proc.returncode}): {proc.stderr.strip()}")
            self.last_log = proc.stderr
            return [np.fromfile(f, s.dtype).reshape(s.shape)
                    for f, s in zip(out_files, self.outputs)]
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


_EMPTY = aligned_empty(ALIGN)        # where zero-element tensors point (numpy gives them a
#                                      placeholder address that need not be aligned)


def _pointer(a: np.ndarray) -> int:
    """The data address to pass for `a`: aligned, also when `a` has no elements."""
    return a.ctypes.data if a.size else _EMPTY.ctypes.data


def _aligned(a: np.ndarray) -> np.ndarray:
    if a.flags.c_contiguous and a.ctypes.data % ALIGN == 0:
        return a
    buf = aligned_empty(a.nbytes).view(a.dtype).reshape(a.shape)
    buf[...] = a
    return buf


class _Lib:
    """The C API of one loaded lib<id>.so."""

    def __init__(self, cdll: ctypes.CDLL, name: str, profile: bool = False):
        self._cdll = cdll
        if profile:
            self.profile_steps = getattr(cdll, f"{name}_profile_steps")
            self.profile_steps.restype = ctypes.c_int
            self.profile_step = getattr(cdll, f"{name}_profile_step")
            self.profile_step.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
            self.profile_step.restype = ctypes.c_double
            self.profile_reset = getattr(cdll, f"{name}_profile_reset")
            self.profile_reset.restype = None
        self.run = getattr(cdll, f"{name}_run")
        self.run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.run.restype = ctypes.c_int
        self.set_num_threads = getattr(cdll, f"{name}_set_num_threads")
        self.set_num_threads.argtypes = [ctypes.c_int]
        self.set_num_threads.restype = None
        self.get_num_threads = getattr(cdll, f"{name}_get_num_threads")
        self.get_num_threads.argtypes = []
        self.get_num_threads.restype = ctypes.c_int
        self.last_error = getattr(cdll, f"{name}_last_error")
        self.last_error.argtypes = []
        self.last_error.restype = ctypes.c_char_p


def _profile_library(path: Path, name: str) -> Path:
    """lib<id>_profile.so of the bundle at `path`, built by its Makefile when missing."""
    so = path / f"lib{name}_profile.so"
    if not so.is_file():
        proc = subprocess.run(["make", "-s", "-C", str(path), "profile"], capture_output=True,
                              text=True)
        if proc.returncode != 0 or not so.is_file():
            raise UsageError(f"{path}: `make profile` failed:\n{proc.stdout}{proc.stderr}")
    return so


def _load_shared(so: Path, name: str, profile: bool = False) -> _Lib:
    """dlopen through a fresh symlink: glibc hands back an already loaded library of the same
    path, and a rebuilt bundle at the same path must load the new file (each load gets its own
    runtime state, thread pool included)."""
    if not so.is_file():
        raise UsageError(f"{so}: missing; the bundle is incomplete (rebuild it)")
    tmp = tempfile.mkdtemp(prefix="edgecc-so-")
    try:
        link = os.path.join(tmp, so.name)
        os.symlink(so.absolute(), link)
        return _Lib(ctypes.CDLL(link, mode=ctypes.RTLD_LOCAL), name, profile)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
