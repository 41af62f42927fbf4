"""Shared fixtures: zoo model files, materialized once and cached across test sessions.

The cache lives in `$EDGECC_ZOO_CACHE` or `<tmp>/edgecc-zoo-cache`; materialized files are
keyed by the weight recipe (see compiler/zoo.py), so a stale file is never reused.
"""
from pathlib import Path

import pytest


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
