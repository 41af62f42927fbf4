"""Numeric comparison and seeded inputs: the one error metric and the one input maker that the
pass manager, `edgecc check`, the demo, the tests and the benchmarks use.

    feeds = seeded_inputs(graph, seed=0)          # {input name: array}
    err = compare(got, want)                      # Error(abs, rel, scale)
    err.rel <= 1e-4                               # max |got - want| / max |want|
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Error(NamedTuple):
    abs: float        # max |got - want| over the finite elements of want
    rel: float        # abs relative to the output's scale (abs itself when the scale is 0)
    scale: float      # max |want| over its finite elements


INF = Error(math.inf, math.inf, 0.0)


def compare(got, want, same_dtype: bool = False) -> Error:
    """How far `got` is from `want`. Non-finite values must agree exactly (NaN with NaN, inf
    with the same inf); a shape change (or, with same_dtype, a dtype change) is an infinite
    error. Empty arrays agree."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or (same_dtype and got.dtype != want.dtype):
        return INF
    if got.size == 0:
        return Error(0.0, 0.0, 0.0)
    g, w = got.astype(np.float64), want.astype(np.float64)
    finite = np.isfinite(w)
    both_nan = np.isnan(g) & np.isnan(w)
    if not np.all(finite | both_nan | (g == w)) or not np.all(np.isfinite(g) | ~finite):
        return INF
    if not finite.any():
        return Error(0.0, 0.0, 0.0)
    scale = float(np.max(np.abs(w[finite])))
    err = float(np.max(np.abs(g[finite] - w[finite])))
    return Error(err, err / scale if scale > 0 else err, scale)


def relative_error(got, want) -> float:
    """compare(got, want).rel: the error relative to want's scale."""
    return compare(got, want).rel


def seeded_inputs(graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs for a graph's inputs (`graph.inputs`, or a list of Values):
    N(0, 1) floats, {0, 1} bools, integers in [0, 10)."""
    values = graph.inputs if hasattr(graph, "inputs") else graph
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in values:
        if v.type.dtype.startswith("f"):
            feeds[v.name] = rng.standard_normal(v.type.shape).astype(v.type.np_dtype)
        elif v.type.dtype == "bool":
            feeds[v.name] = rng.integers(0, 2, v.type.shape).astype(bool)
        else:
            feeds[v.name] = rng.integers(0, 10, v.type.shape).astype(v.type.np_dtype)
    return feeds
