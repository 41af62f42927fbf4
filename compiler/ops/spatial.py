"""Spatial output sizes of convolutions and pools, exactly as ONNX (and onnxruntime) compute them.

`pads` is ONNX's layout: all begins, then all ends.
"""
from __future__ import annotations

from typing import Sequence

from ..ir import Op
from ..opdef import OpRuleError
from ._util import attr_ints, fmt


def conv_output_shape(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                      pads: Sequence[int], dilations: Sequence[int]) -> tuple[int, ...]:
    """out = floor((in + pb + pe - d*(k-1) - 1) / s) + 1 per spatial axis (may be <= 0)."""
    k = len(spatial)
    return tuple((spatial[i] + pads[i] + pads[k + i] - dilations[i] * (kernel[i] - 1) - 1)
                 // strides[i] + 1 for i in range(k))


def pool_output_shape(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                      pads: Sequence[int], dilations: Sequence[int] | None = None,
                      ceil_mode: int = 0) -> tuple[int, ...]:
    """Pool output size; with ceil_mode the last window must start inside input + begin pad."""
    k = len(spatial)
    dilations = dilations or [1] * k
    out = []
    for i in range(k):
        span = spatial[i] + pads[i] + pads[k + i] - dilations[i] * (kernel[i] - 1) - 1
        n = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (n - 1) * strides[i] >= spatial[i] + pads[i]:
            n -= 1
        out.append(n)
    return tuple(out)


def conv_transpose_output_shape(spatial: Sequence[int], kernel: Sequence[int],
                                strides: Sequence[int], pads: Sequence[int],
                                dilations: Sequence[int],
                                output_padding: Sequence[int]) -> tuple[int, ...]:
    """out = s*(in-1) + output_padding + d*(k-1) + 1 - pb - pe per spatial axis."""
    k = len(spatial)
    return tuple(strides[i] * (spatial[i] - 1) + output_padding[i]
                 + dilations[i] * (kernel[i] - 1) + 1 - pads[i] - pads[k + i] for i in range(k))


def window_attrs(op: Op, k: int) -> dict[str, list[int]]:
    """Checks kernel_shape/strides/pads/dilations for k spatial axes; returns them as lists."""
    return {"kernel_shape": attr_ints(op, "kernel_shape", k, 1, f"{k} spatial axes"),
            "strides": attr_ints(op, "strides", k, 1, f"{k} spatial axes"),
            "pads": attr_ints(op, "pads", 2 * k, 0, f"begins then ends of {k} spatial axes"),
            "dilations": attr_ints(op, "dilations", k, 1, f"{k} spatial axes")}


def check_positive(kind: str, out: Sequence[int], x_shape: Sequence[int], a: dict) -> None:
    if any(d <= 0 for d in out):
        details = ", ".join(f"{n}={v}" for n, v in a.items())
        raise OpRuleError(f"{kind}: output size would be {fmt(out)} (<= 0) for input "
                          f"{fmt(x_shape)} with {details}")


def canon_window(kind: str):
    """The canonicalize hook of Conv/ConvTranspose/MaxPool/AveragePool: kernel_shape from W,
    unit strides and dilations, zero pads (and output_padding) for each spatial axis."""
    def hook(a, types, n):
        x = types[0] if types else None
        w = types[1] if len(types) > 1 else None
        # blocked layouts (NCHW{c}c, checked by inference) have 2 spatial axes: W[.., kh, kw, ..]
        layout = a.get("layout")
        blocked = layout is not None and getattr(layout, "is_blocked", False)
        if kind.startswith("Conv") and w is not None and w.rank >= 3:
            if a.get("kernel_shape") is None:
                a["kernel_shape"] = list(w.shape[2:4] if blocked else w.shape[2:])
        ks = a.get("kernel_shape")
        k = len(ks) if isinstance(ks, list) else (
            2 if blocked else x.rank - 2 if x is not None else None)
        if k is None or k < 0:
            return
        defaults = {"strides": [1] * k, "pads": [0] * 2 * k, "dilations": [1] * k}
        if kind == "ConvTranspose":
            defaults["output_padding"] = [0] * k
        for name, value in defaults.items():
            if a.get(name) is None:
                a[name] = value
    return hook


def window_flops(op) -> int:
    """Pools: one operation per window element of every output."""
    import math
    return op.outputs[0].type.numel * math.prod(op.attrs["kernel_shape"])
