"""Code-generation targets: the edgecc target names mapped to TVM LLVM targets.

    t = make_target("x86_64")                 # host CPU features (native), or x86-64-v3
    t = make_target("arm64", mattr=["+dotprod"])
    t.tvm                                      # the tvm.target.Target to compile with

Targets are plain data, so the same arguments on the same machine always give the same target
(and the same object code). x86_64 defaults to the host's feature level read from
/proc/cpuinfo when the host is x86_64 (like -march=native); cross-builds use the portable
x86-64-v3 (AVX2+FMA). `mcpu` overrides the detection.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

from edgecc.errors import UsageError

TARGETS = ("x86_64", "arm64")
_TRIPLES = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
PORTABLE_X86 = "x86-64-v3"

# x86-64 micro-architecture levels (psABI) by the /proc/cpuinfo flags each one requires.
_X86_LEVELS = [
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx", "avx2", "bmi1", "bmi2", "fma", "movbe", "xsave"}),
    ("x86-64-v2", {"sse4_1", "sse4_2", "ssse3", "popcnt", "cx16"}),
]


@dataclass(frozen=True)
class Target:
    name: str                     # "x86_64" | "arm64"
    triple: str                   # LLVM target triple
    mcpu: str | None
    mattr: tuple[str, ...]

    @property
    def tvm(self):
        import tvm
        spec = {"kind": "llvm", "mtriple": self.triple}
        if self.mcpu:
            spec["mcpu"] = self.mcpu
        if self.mattr:
            spec["mattr"] = list(self.mattr)
        return tvm.target.Target(spec)

    @property
    def is_host(self) -> bool:
        """Objects for this target can run in this process."""
        return _host_name() == self.name

    def describe(self) -> str:
        extra = [f"mcpu={self.mcpu}"] if self.mcpu else []
        extra += [f"mattr={','.join(self.mattr)}"] if self.mattr else []
        return f"{self.name} ({self.triple}{', ' + ', '.join(extra) if extra else ''})"


def make_target(name: str, mcpu: str | None = None,
                mattr: list[str] | tuple[str, ...] | str | None = None) -> Target:
    """The Target for an edgecc target name; UsageError for an unknown name or bad mattr."""
    if name not in TARGETS:
        raise UsageError(f"unknown target '{name}'; choose one of {', '.join(TARGETS)}")
    if isinstance(mattr, str):
        mattr = [a for a in mattr.split(",") if a]
    attrs = list(mattr or [])
    for a in attrs:
        if not (a.startswith(("+", "-")) and len(a) > 1):
            raise UsageError(f"--mattr entry '{a}' must look like +feature or -feature "
                             f"(e.g. +dotprod)")
    if name == "arm64":
        if "+neon" not in attrs:
            attrs.insert(0, "+neon")
        return Target(name, _TRIPLES[name], mcpu, tuple(attrs))
    if mcpu is None:
        mcpu = host_x86_level() if _host_name() == "x86_64" else PORTABLE_X86
    return Target(name, _TRIPLES[name], mcpu, tuple(attrs))


def host_x86_level(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The highest x86-64-vN level whose features the host CPU has (from cpuinfo flags)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return PORTABLE_X86
    have = set(flags)
    for level, need in _X86_LEVELS:
        if need <= have:
            return level
    return "x86-64"


def _host_name() -> str | None:
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64",
            "arm64": "arm64"}.get(machine)
