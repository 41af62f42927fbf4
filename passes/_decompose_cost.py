"""decompose's cost model: the estimated time of a layer's kernels and of its factors' kernels
on a target, for the rule "a decomposition is kept only where it runs faster".

A model, not a measurement, so that a build depends only on its inputs and flags (timings
drift run to run). Each kernel costs
    flops / (rate per f32 lane x the target's lanes) + activation bytes / ACT_BW
    + weight bytes / WEIGHT_BW + KERNEL_OVERHEAD
with the rate of the blocked channel layout where convert-layout would use it (both channel
counts whole vectors) and the NCHW / dense rate otherwise, plus a layout conversion (the
activation read and written once more) wherever a factor's layout differs from its
neighbour's. The constants were fitted to 1,663
kernels of the -O3 builds of the CRNN, PP-OCRv4 det and PP-OCR cls and of their factors at
every rank level (Sapphire Rapids, AVX-512, TVM runtime, 2 threads): the predicted time saved
has the measured sign for 127 of 145 (layer, rank) pairs, the misses mostly within 20% of the
layer's time, hence the MIN_SAVING margin. Known blind spot: thin factors (rank <= 64) on small maps (20x20
and below) run at about half the rate the model gives them. `python bench/bench_decompose.py
--cost-check` prints predicted against measured savings on the machine it runs on.
"""
from __future__ import annotations

from dataclasses import dataclass

BLOCKED_FLOPS_PER_LANE = 183e9 / 16      # FLOP/s per f32 lane, NCHW{c}c conv kernels
DENSE_FLOPS_PER_LANE = 106e9 / 16        # NCHW convs, Gemm, MatMul
ACT_BW = 22.9e9                          # bytes/s of activations read and written
WEIGHT_BW = 16.2e9                       # bytes/s of weights read
KERNEL_OVERHEAD = 1.6e-6                 # seconds per kernel launch
MIN_SAVING = 0.2                         # factors must be estimated this much faster


@dataclass(frozen=True)
class Kernel:
    flops: int
    act_bytes: int
    weight_bytes: int
    blocked: bool
    act_in_bytes: int = 0
    act_out_bytes: int = 0

    def seconds(self, lanes: int) -> float:
        rate = (BLOCKED_FLOPS_PER_LANE if self.blocked else DENSE_FLOPS_PER_LANE) * lanes
        return (self.flops / rate + self.act_bytes / ACT_BW + self.weight_bytes / WEIGHT_BW
                + KERNEL_OVERHEAD)


def seconds(kernels: list[Kernel], lanes: int) -> float:
    return sum(k.seconds(lanes) for k in kernels)


def conv_kernel(c_in: int, c_out: int, taps: int, in_positions: int, out_positions: int,
                lanes: int, dense: bool = False) -> Kernel:
    """A group-1 conv (or, dense, a matrix product of `out_positions` rows); f32 operands."""
    blocked = not dense and c_in % lanes == 0 and c_out % lanes == 0
    act_in, act_out = 4 * in_positions * c_in, 4 * out_positions * c_out
    return Kernel(2 * out_positions * c_out * c_in * taps, act_in + act_out,
                  4 * c_out * c_in * taps, blocked, act_in, act_out)


def with_conversions(chain: list[Kernel], outside_blocked: bool) -> list[Kernel]:
    """A layer's factor kernels plus the layout conversions convert-layout would insert
    between them: where one runs blocked and the next (or the layer's neighbours, taken in
    the layer's own layout) does not, its activation is read and written once more."""
    out, prev = [], outside_blocked
    for k in chain:
        if k.blocked != prev:
            out.append(Kernel(0, k.act_in_bytes * 2, 0, False))
        out.append(k)
        prev = k.blocked
    if prev != outside_blocked:
        out.append(Kernel(0, chain[-1].act_out_bytes * 2, 0, False))
    return out
