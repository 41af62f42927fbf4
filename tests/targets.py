"""Pinned targets for tests: what a schedule or pass decides must not depend on the machine
the suite runs on (AVX-512 or AVX2-only hosts occur), so tests name their target.

    AVX512, AVX2       x86_64 at x86-64-v4 (16 f32 lanes, 32 registers) / x86-64-v3 (8, 16)
    ARM64, ARM64_DOT   generic NEON / NEON + dotprod (built and run under qemu, never here)
    X86                both x86 variants: decisions tests parametrize over them
    RUNNABLE           the x86 variants whose code runs on this machine: numeric tests that
                       execute kernels parametrize over them (both on an AVX-512 host; an
                       AVX2-only host cannot execute AVX-512 code)
    FAST               the widest runnable x86 target: the default for numeric tests that
                       need one target
"""
from __future__ import annotations

import pytest

from edgecc.target import make_target

AVX512 = make_target("x86_64", mcpu="x86-64-v4")
AVX2 = make_target("x86_64", mcpu="x86-64-v3")
ARM64 = make_target("arm64")
ARM64_DOT = make_target("arm64", mattr=["+dotprod"])
X86 = [AVX512, AVX2]
RUNNABLE = [t for t in X86 if t.runs_here()]
FAST = RUNNABLE[0] if RUNNABLE else AVX2


def target_id(t) -> str:
    return {AVX512: "avx512", AVX2: "avx2", ARM64: "neon", ARM64_DOT: "dotprod"}.get(
        t, t.describe())


x86 = pytest.mark.parametrize("target", X86, ids=target_id)
runnable = pytest.mark.parametrize("target", RUNNABLE, ids=target_id)
