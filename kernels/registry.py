"""The kernel registry: one reference implementation per canonical op kind.

    @kernel("Relu")
    def relu(op, inputs):          # inputs: list[np.ndarray | None] in operand order
        return [np.maximum(inputs[0], 0)]

A kernel reads the op's canonical attributes from `op.attrs` (all present, axes non-negative)
and returns one array per result. It never mutates its inputs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgecc.ir import Op

Kernel = Callable[[Op, list], list]
KERNELS: dict[str, Kernel] = {}


def kernel(*kinds: str):
    def register(fn: Kernel) -> Kernel:
        for kind in kinds:
            assert kind not in KERNELS, f"kernel for {kind} registered twice"
            KERNELS[kind] = fn
        return fn
    return register


def contiguous(a, dtype=None) -> np.ndarray:
    """a as a C-contiguous array (copied only if needed). Unlike np.ascontiguousarray this
    keeps 0-d arrays 0-d, which shape arithmetic relies on."""
    return np.asarray(a, dtype=dtype, order="C")


def compute_dtype(x: np.ndarray) -> np.dtype:
    """The dtype a float kernel runs in: f16 goes through f32, f32/f64 stay."""
    if x.dtype.kind != "f":
        raise TypeError(f"expects a float tensor, got {x.dtype}")
    return np.dtype(np.float32) if x.dtype == np.float16 else x.dtype
