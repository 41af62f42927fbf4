"""Helpers shared by Conv/ConvTranspose/pooling: every 1-D/2-D/3-D case runs one 3-D Numba
kernel, so the spatial dims and their parameters are lifted to rank 3 with unit dims
(one compiled specialization instead of three)."""
from __future__ import annotations

import numpy as np

from .registry import contiguous


def lift_3d(x: np.ndarray, spatial: int) -> np.ndarray:
    """[N, C, *S] (len(S) = spatial ≤ 3) → [N, C, 1.., *S] with 3 spatial dims, contiguous."""
    if spatial > 3:
        raise ValueError(f"{spatial}-D spatial ops are not supported (at most 3-D)")
    x = contiguous(x)
    return x.reshape(x.shape[:2] + (1,) * (3 - spatial) + x.shape[2:])


def params_3d(values, spatial: int, fill: int) -> np.ndarray:
    """A per-spatial-dim list lifted to 3 entries (leading `fill`s), as int64."""
    return np.array([fill] * (3 - spatial) + list(values), dtype=np.int64)


def pads_3d(pads, spatial: int) -> tuple[np.ndarray, np.ndarray]:
    """ONNX pads (begins then ends) → (begins, ends), each lifted to 3 entries."""
    pads = list(pads) or [0] * (2 * spatial)
    return params_3d(pads[:spatial], spatial, 0), params_3d(pads[spatial:], spatial, 0)
