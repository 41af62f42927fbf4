"""Calibration statistics: what a float graph's values look like on sample inputs, and the
range each method picks from them (quantize-int8 uses them).

Per value: the exact min and max over every sample, and a seeded random reservoir of its
elements (at most RESERVOIR in all, an equal share per sample) from which the percentile,
MSE and entropy methods choose a clipping range.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("minmax", "percentile", "entropy", "mse")
RESERVOIR = 1 << 17
PERCENTILE = 99.99
QLEVELS = 256


@dataclass
class ValueStats:
    lo: float = np.inf
    hi: float = -np.inf
    parts: list = field(default_factory=list)

    def add(self, a: np.ndarray, take: int, rng: np.random.Generator) -> None:
        flat = np.asarray(a, np.float32).reshape(-1)
        if flat.size == 0:
            return
        finite = flat[np.isfinite(flat)]
        if finite.size:
            self.lo = min(self.lo, float(finite.min()))
            self.hi = max(self.hi, float(finite.max()))
        if finite.size > take:
            finite = finite[rng.choice(finite.size, take, replace=False)]
        self.parts.append(finite)

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(1, np.float32)


class Collector:
    """Feed it every sample's values (name -> array); read ValueStats per name."""

    def __init__(self, names, samples: int, seed: int = 0):
        self.stats = {n: ValueStats() for n in names}
        self.take = max(1024, RESERVOIR // max(samples, 1))
        self.rng = np.random.default_rng(seed)

    def add(self, values: dict[str, np.ndarray]) -> None:
        for name, st in self.stats.items():
            a = values.get(name)
            if a is not None:
                st.add(a, self.take, self.rng)


def choose_range(st: ValueStats, method: str) -> tuple[float, float]:
    """The [lo, hi] to quantize a value into (always holding 0)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}'; one of {METHODS}")
    lo, hi = min(st.lo, 0.0), max(st.hi, 0.0)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 0 or method == "minmax":
        return (lo if np.isfinite(lo) else 0.0), (hi if np.isfinite(hi) else 0.0)
    s = st.sample.astype(np.float64)
    if method == "percentile":
        plo, phi = np.percentile(s, [100 - PERCENTILE, PERCENTILE])
        return min(float(plo), 0.0), max(float(phi), 0.0)
    # shrink both ends of [lo, hi] by the same factor (0 stays inside); pick the factor with
    # the least squared error (mse) or the least KL divergence (entropy) on the sample
    factors = np.linspace(0.2, 1.0, 81)
    errs = [_mse(s, lo * f, hi * f) if method == "mse" else _kl(s, lo * f, hi * f, lo, hi)
            for f in factors]
    f = float(factors[int(np.argmin(errs))])
    return lo * f, hi * f


def _mse(s: np.ndarray, lo: float, hi: float) -> float:
    """Expected squared error of quantizing s into [lo, hi]: clipping plus rounding."""
    step = (hi - lo) / (QLEVELS - 1)
    c = np.clip(s, lo, hi)
    return float(np.mean((c - s) ** 2) + step * step / 12.0)


def _kl(s: np.ndarray, lo: float, hi: float, full_lo: float, full_hi: float) -> float:
    """KL(P || Q) as TensorRT's entropy calibration: P the sample's histogram (2048 bins over
    [full_lo, full_hi]) restricted to the bins of [lo, hi] with the clipped tails folded into
    its edge bins, Q the bins of [lo, hi] alone merged into 256 levels (each level spread over
its non-empty bins), so clipped mass costs what it weighs."""
    bins = 2048
    hist, _ = np.histogram(s, bins=bins, range=(full_lo, full_hi))
    width = (full_hi - full_lo) / bins
    a = int(np.clip(np.floor((lo - full_lo) / width + 1e-9), 0, bins - 1))
    b = int(np.clip(np.ceil((hi - full_lo) / width - 1e-9), a + 1, bins))
    if b - a < QLEVELS:
        return np.inf                      # fewer bins than levels: not a candidate
    raw = hist[a:b].astype(np.float64)
    p = raw.copy()
    p[0] += hist[:a].sum()
    p[-1] += hist[b:].sum()
    if p.sum() == 0:
        return 0.0
    q = np.zeros_like(raw)           # (from the bins inside only: clipping is a loss)
    edges = np.linspace(0, b - a, QLEVELS + 1).round().astype(int)
    for k in range(QLEVELS):
        chunk = raw[edges[k]:edges[k + 1]]
        nz = chunk > 0
        if nz.any():
            q[edges[k]:edges[k + 1]][nz] = chunk.sum() / nz.sum()
    if q.sum() == 0:
        return np.inf
    p /= p.sum()
    q /= q.sum()
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-9))))


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal to quantization-noise ratio of got against ref, in dB (inf when equal)."""
    ref = np.asarray(ref, np.float64)
    noise = np.sum((np.asarray(got, np.float64) - ref) ** 2)
    signal = np.sum(ref ** 2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def pooled_sqnr(pairs) -> float:
    """SQNR over many (ref, got) pairs as one signal (sums of squares pooled)."""
    signal = noise = 0.0
    for ref, got in pairs:
        ref = np.asarray(ref, np.float64)
        signal += float(np.sum(ref ** 2))
        noise += float(np.sum((np.asarray(got, np.float64) - ref) ** 2))
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")
