"""Shared fixtures: zoo model files, materialized once and cached across test sessions.

The cache lives in `$EDGECC_ZOO_CACHE` or `<tmp>/edgecc-zoo-cache`; materialized files are
keyed by the weight recipe (see compiler/zoo.py), so a stale file is never reused.
"""
from pathlib import Path

import os

import pytest


def _pretend_host() -> None:
    """EDGECC_TEST_HOST=avx2 runs the suite as on an AVX2-only machine (no AVX-512, no
    VNNI): host detection and Target.runs_here see the host's cpuinfo flags without them, so
    the driver builds for x86-64-v3 and numeric tests run only AVX2 code. For checking, on
    an AVX-512 host, that nothing assumes the host (both kinds occur in CI)."""
    kind = os.environ.get("EDGECC_TEST_HOST")
    if not kind:
        return
    if kind != "avx2":
        raise pytest.UsageError(f"EDGECC_TEST_HOST={kind!r}: only 'avx2' is known")
    import edgecc.target as target
    real = target._cpuinfo_flags
    target._cpuinfo_flags = lambda cpuinfo="/proc/cpuinfo": {
        f for f in real(cpuinfo) if not f.startswith(("avx512", "avx_vnni", "amx"))}


_pretend_host()


def zoo_cache_dir() -> Path:
    from edgecc import zoo
    return zoo.default_cache_dir()


@pytest.fixture(scope="session")
def zoo_path():
    """zoo_path(name) -> Path of a runnable .onnx for zoo model `name` (realistic weights)."""
    from edgecc import zoo

    def get(name: str) -> Path:
        if not zoo.source_path(name).is_file():   # ../shared absent: nothing to test on
            pytest.skip(f"zoo model {name}: {zoo.source_path(name)} not available")
        return Path(zoo.materialize(name, zoo_cache_dir()))
    return get


@pytest.fixture(scope="session")
def zoo_source():
    """zoo_source(name) -> Path of the model file as shipped (skips if it is missing)."""
    from edgecc import zoo

    def get(name: str) -> Path:
        path = zoo.source_path(name)
        if not path.is_file():
            pytest.skip(f"{path} not available")
        return path
    return get
