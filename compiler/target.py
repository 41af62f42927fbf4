"""Code-generation targets as typed data: what passes and backends may know about the machine.

    t = make_target("x86_64", mcpu="x86-64-v3")      # an AVX2 CPU, whatever the host is
    t = make_target("arm64", mattr=["+dotprod"])
    t = host_target("x86_64")                        # the driver's default: this machine
    t.lanes("f32"), t.vector_registers, t.cache_bytes, t.has("avx512vnni"), t.int8_dot
    t.tvm                                            # the tvm.target.Target to compile with

A Target is built once from (name, mcpu, mattr) and passed explicitly to the passes
(PassContext.target) and the backends. Its features are LLVM's own answer for that CPU and
feature list, so what the schedules assume is exactly what the compiler will emit. Nothing
else in edgecc reads the host: `host_target` (detection from /proc/cpuinfo) is called by the
driver only when the user gave no --mcpu, and the result is the same as naming that CPU.
"""
from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field

from .dtypes import DTYPE
from .errors import UsageError, option

TARGETS = ("x86_64", "arm64")
_TRIPLES = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
PORTABLE_X86 = "x86-64-v3"

# x86-64 micro-architecture levels (psABI) by the /proc/cpuinfo flags each one requires.
_X86_LEVELS = [
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx", "avx2", "bmi1", "bmi2", "fma", "movbe", "xsave"}),
    ("x86-64-v2", {"sse4_1", "sse4_2", "ssse3", "popcnt", "cx16"}),
]
# features edgecc's kernels choose between (LLVM names); the rest of LLVM's list is kept too
KNOWN_FEATURES = ("sse4.1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                  "avx512vnni", "avxvnni", "neon", "dotprod", "i8mm")


@dataclass(frozen=True)
class Target:
    name: str                     # "x86_64" | "arm64"
    triple: str                   # LLVM target triple
    mcpu: str | None
    mattr: tuple[str, ...]
    features: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    # ---- facts the schedules size their work by ------------------------------------------
    def has(self, feature: str) -> bool:
        """Whether the target has LLVM feature `feature` (e.g. "avx512vnni", "dotprod")."""
        return feature in self.features

    @property
    def is_arm(self) -> bool:
        return self.name == "arm64"

    @property
    def vector_bits(self) -> int:
        """Width of the vector registers the kernels use: 512 (AVX-512), 256 (AVX/AVX2),
        128 (NEON, SSE)."""
        if self.is_arm:
            return 128
        if self.has("avx512f"):
            return 512
        return 256 if self.has("avx2") or self.has("avx") else 128

    def lanes(self, dtype: str = "f32") -> int:
        """Elements of `dtype` per vector register: f32 16 / 8 / 4 (AVX-512 / AVX2 / NEON)."""
        return self.vector_bits // DTYPE[dtype].bits

    @property
    def vector_registers(self) -> int:
        """Vector registers: 32 on AVX-512 and AArch64, 16 on AVX2/SSE."""
        return 32 if self.is_arm or self.has("avx512f") else 16

    @property
    def cache_bytes(self) -> int:
        """Per-core L2 cache assumed: 1 MiB on AVX-512 (server cores), 256 KiB on AVX2/SSE,
        512 KiB on AArch64 (Cortex-A7x). Working sets a kernel re-reads per tile are kept
        within it."""
        if self.is_arm:
            return 512 << 10
        return (1 << 20) if self.has("avx512f") else (256 << 10)

    @property
    def int8_dot(self) -> str | None:
        """The int8 dot-product instruction family: "avx512vnni" (vpdpbusd on zmm),
        "avxvnni" (vpdpbusd on ymm), "dotprod" (sdot/udot), or None."""
        for f in ("avx512vnni", "avxvnni", "dotprod"):
            if self.has(f) and (f != "avx512vnni" or self.has("avx512bw")):
                return f
        return None

    # ---- TVM and naming --------------------------------------------------------------------
    @property
    def tvm(self):
        import tvm
        return tvm.target.Target(self.tvm_spec())

    def tvm_spec(self) -> dict:
        spec = {"kind": "llvm", "mtriple": self.triple}
        if self.mcpu:
            spec["mcpu"] = self.mcpu
        if self.mattr:
            spec["mattr"] = list(self.mattr)
        return spec

    @property
    def is_host(self) -> bool:
        """Objects for this target can run in this process (same architecture; the CPU must
        also have the target's features, see runs_here)."""
        return host_arch() == self.name

    def runs_here(self) -> bool:
        """Code for this target runs on this machine: same architecture and every kernel
        feature the target uses is in the host's cpuinfo."""
        if not self.is_host:
            return False
        if self.is_arm:
            return True
        have = _cpuinfo_flags()
        need = {f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "avxvnni")
                if self.has(f)}
        return all(_CPUINFO_NAME.get(f, f) in have for f in need)

    @property
    def key(self) -> str:
        """A short stable name of the exact target: name + digest of the LLVM target string
        (tuning records are kept per key)."""
        digest = hashlib.sha256(str(self.tvm).encode()).hexdigest()
        return f"{self.name}-{digest[:16]}"

    def describe(self) -> str:
        extra = [f"mcpu={self.mcpu}"] if self.mcpu else []
        extra += [f"mattr={','.join(self.mattr)}"] if self.mattr else []
        return f"{self.name} ({self.triple}{', ' + ', '.join(extra) if extra else ''})"


_CPUINFO_NAME = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni"}


def make_target(name: str, mcpu: str | None = None,
                mattr: list[str] | tuple[str, ...] | str | None = None) -> Target:
    """The Target for an edgecc target name (UsageError for an unknown name, CPU or mattr).
    Without `mcpu`, x86_64 is the portable x86-64-v3 (AVX2 + FMA) and arm64 generic NEON:
    the driver calls host_target instead to build for this machine."""
    if name not in TARGETS:
        raise UsageError(f"unknown target '{name}'; choose one of {', '.join(TARGETS)}")
    if isinstance(mattr, str):
        mattr = [a for a in mattr.split(",") if a]
    attrs = list(mattr or [])
    for a in attrs:
        if not (a.startswith(("+", "-")) and len(a) > 1):
            raise UsageError(f"{option('mattr')} entry '{a}' must look like +feature or -feature "
                             f"(e.g. +dotprod)")
    if name == "arm64":
        if "+neon" not in attrs:
            attrs.insert(0, "+neon")
    elif mcpu is None:
        mcpu = PORTABLE_X86
    t = Target(name, _TRIPLES[name], mcpu, tuple(attrs))
    return Target(t.name, t.triple, t.mcpu, t.mattr, _llvm_features(t))


def host_target(name: str, mattr=None) -> Target:
    """The target for this machine's CPU: on an x86_64 host building for x86_64, the highest
    x86-64-vN level its cpuinfo flags reach; elsewhere as make_target without mcpu."""
    mcpu = None
    if name == "x86_64" and host_arch() == "x86_64":
        mcpu = host_x86_level()
    return make_target(name, mcpu=mcpu, mattr=mattr)


def host_x86_level(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The highest x86-64-vN level whose features the host CPU has (from cpuinfo flags)."""
    have = _cpuinfo_flags(cpuinfo)
    if not have:
        return PORTABLE_X86
    for level, need in _X86_LEVELS:
        if need <= have:
            return level
    return "x86-64"


def _cpuinfo_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(cpuinfo) as f:
            return set(next((line.split(":", 1)[1].split() for line in f
                             if line.startswith("flags")), []))
    except OSError:
        return set()


def host_arch() -> str | None:
    """This machine's architecture as an edgecc target name (None for others)."""
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64",
            "arm64": "arm64"}.get(machine)


def _llvm_features(t: Target) -> frozenset[str]:
    """LLVM's features of the target's CPU with its mattr applied; UsageError for a CPU name
    LLVM does not know."""
    import tvm
    from tvm.target import codegen
    tt = tvm.target.Target(t.tvm_spec())
    if t.mcpu and not codegen.llvm_is_valid_cpu(t.mcpu, t.triple):
        raise UsageError(f"{option('mcpu', t.mcpu)} is not a CPU LLVM knows for {t.triple} "
                         f"(e.g. x86-64-v3, haswell, skylake-avx512, cortex-a76)")
    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(tt))
