"""Calibration samples (--calib PATH) for --int8 and --decompose: read, checked against the
model's inputs, returned as feeds (input name -> array), one dict per sample.

PATH is one of
  - a directory of .npy files, one sample each (models with one input);
  - a directory of .npz files, one sample each, keyed by input name;
  - one .npz file keyed by input name, each array with a leading sample axis.
Files are read in sorted name order. Every problem is a UsageError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UsageError, option

MIN_SAMPLES = 4


def read_samples(path: str | Path) -> list[tuple[str, dict[str, np.ndarray] | np.ndarray]]:
    """(file label, {name: array} or a bare array of a .npy) per sample, unchecked."""
    p = Path(path)
    flag = option("calib", str(path))
    if not p.exists():
        raise UsageError(f"{flag}: no such file or directory")
    if p.is_file():
        if p.suffix != ".npz":
            raise UsageError(f"{flag}: a single file must be an .npz keyed by input name with "
                             f"a leading sample axis (or give a directory of .npy/.npz files)")
        arrays = _load_npz(p)
        counts = {k: a.shape[0] if a.ndim else 0 for k, a in arrays.items()}
        if len(set(counts.values())) != 1:
            raise UsageError(f"{flag}: arrays hold different numbers of samples {counts}")
        n = next(iter(counts.values()), 0)
        return [(f"{p.name}[{i}]", {k: a[i] for k, a in arrays.items()}) for i in range(n)]
    files = sorted(f for f in p.iterdir() if f.suffix in (".npy", ".npz"))
    if not files:
        raise UsageError(f"{flag}: the directory holds no .npy or .npz files")
    kinds = {f.suffix for f in files}
    if len(kinds) > 1:
        raise UsageError(f"{flag}: mixes .npy and .npz files; use one kind")
    if kinds == {".npz"}:
        return [(f.name, _load_npz(f)) for f in files]
    return [(f.name, _load_npy(f)) for f in files]


def _load_npz(f: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:        # not a zip, pickled objects, damaged
        raise UsageError(f"{f}: not a readable .npz of numeric arrays ({type(e).__name__})") \
            from None


def _load_npy(f: Path) -> np.ndarray:
    try:
        return np.load(f, allow_pickle=False)
    except Exception as e:
        raise UsageError(f"{f}: not a readable .npy numeric array ({type(e).__name__})") \
            from None


def sample_shapes(samples) -> dict[str, tuple[int, ...]] | None:
    """Input shapes of the first sample (to bind dynamic dims), when samples name them."""
    if not samples or not isinstance(samples[0][1], dict):
        return None
    return {k: tuple(a.shape) for k, a in samples[0][1].items()}


def check_samples(samples, inputs) -> list[dict[str, np.ndarray]]:
    """Feeds per sample, checked against the graph inputs (Values): names, shapes, dtypes,
    finite values, enough samples."""
    flag = option("calib")
    if len(samples) < MIN_SAMPLES:
        raise UsageError(f"{flag}: {len(samples)} sample(s); calibration needs at least "
                         f"{MIN_SAMPLES} (16-100 representative inputs are typical)")
    names = [v.name for v in inputs]
    feeds = []
    for label, s in samples:
        if not isinstance(s, dict):
            if len(inputs) != 1:
                raise UsageError(f"{label}: the model has {len(inputs)} inputs "
                                 f"({', '.join(names)}); give .npz files keyed by input name")
            s = {names[0]: s}
        missing, extra = set(names) - set(s), set(s) - set(names)
        if missing or extra:
            raise UsageError(f"{label}: holds {sorted(s)}, the model's inputs are {names}")
        for v in inputs:
            a = s[v.name]
            if tuple(a.shape) != v.type.shape:
                raise UsageError(f"{label}: '{v.name}' has shape {list(a.shape)}, the model "
                                 f"takes {list(v.type.shape)}")
            if a.dtype != v.type.np_dtype:
                raise UsageError(f"{label}: '{v.name}' is {a.dtype}, the model takes "
                                 f"{v.type.np_dtype} (convert with .astype(np."
                                 f"{v.type.np_dtype}))")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise UsageError(f"{label}: '{v.name}' holds NaN or Inf")
        feeds.append({k: np.ascontiguousarray(s[k]) for k in names})
    return feeds
