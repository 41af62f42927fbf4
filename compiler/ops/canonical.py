"""canonicalize_attrs: fill the attributes whose defaults depend on operand ranks or shapes.

Op declarations give such attributes the default None; build_op calls this after completing
the other defaults. Inference never fills anything in: a canonical op holds every attribute.
Values that are already given are kept (only their Python types are normalised: tuples and 1-D
integer arrays become lists, numpy scalars become int/float).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..ir import TensorType
from ..opdef import OpRuleError
from .layout import LAYOUT_KINDS, Layout
from .pooling import REDUCE_KINDS


def _plain(x: Any) -> Any:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, tuple) or (isinstance(x, np.ndarray) and x.ndim == 1
                                and x.dtype.kind in "iuf"):
        return [_plain(v) for v in x]
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def canonicalize_attrs(kind: str, attrs: dict[str, Any],
                       input_types: Sequence[TensorType | None],
                       num_outputs: int | None = None) -> dict[str, Any]:
    """A new attrs dict with rank-dependent defaults filled in (attrs is not modified).

    `num_outputs` is needed only for Split without explicit sizes (equal split).
    """
    a = {k: _plain(v) for k, v in attrs.items()}
    x = input_types[0] if input_types else None
    layout_keys = ("src_layout", "dst_layout") if kind == "LayoutTransform" else \
        ("layout",) if kind in LAYOUT_KINDS else ()
    for key in layout_keys:                 # the text IR and tests give layouts as strings
        if isinstance(a.get(key), str):
            try:
                a[key] = Layout.parse(a[key])
            except OpRuleError:
                raise OpRuleError(f"{kind}: attribute {key}={a[key]!r} must be 'NCHW' or "
                                  f"'NCHW{{c}}c' with c >= 1 (e.g. 'NCHW16c')") from None

    def fill(name, value):
        if a.get(name) is None:
            a[name] = value

    if kind in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
        w = input_types[1] if len(input_types) > 1 else None
        # blocked layouts (NCHW{c}c, checked by inference) have 2 spatial axes: W[.., kh, kw, ..]
        blocked = isinstance(a.get("layout"), Layout) and a["layout"].is_blocked
        if kind.startswith("Conv") and w is not None and w.rank >= 3:
            fill("kernel_shape", list(w.shape[2:4] if blocked else w.shape[2:]))
        ks = a.get("kernel_shape")
        k = len(ks) if isinstance(ks, list) else (
            2 if blocked else x.rank - 2 if x is not None else None)
        if k is not None and k >= 0:
            fill("strides", [1] * k)
            fill("pads", [0] * 2 * k)
            if kind != "AveragePool":
                fill("dilations", [1] * k)
            if kind == "ConvTranspose":
                fill("output_padding", [0] * k)
    elif x is None:
        pass
    elif kind == "Transpose":
        fill("perm", list(range(x.rank))[::-1])
    elif kind in REDUCE_KINDS:
        if not a.get("axes"):      # None or []: ONNX reduces over all axes
            a["axes"] = list(range(x.rank))
    elif kind == "Squeeze":
        fill("axes", [i for i, d in enumerate(x.shape) if d == 1])
    elif kind in ("Softmax", "LogSoftmax", "LayerNormalization"):
        fill("axis", x.rank - 1)
    elif kind == "Slice" and isinstance(a.get("starts"), list):
        n = len(a["starts"])
        fill("axes", list(range(n)))
        fill("steps", [1] * n)
    elif kind == "Split" and a.get("split") is None and num_outputs:
        axis = a.get("axis", 0)
        if isinstance(axis, int) and 0 <= axis < x.rank:
            a["split"] = equal_split(x.shape[axis], num_outputs)
    elif kind == "LSTM":
        r = input_types[2] if len(input_types) > 2 else None
        if r is not None and r.rank == 3:
            fill("hidden_size", r.shape[2])
        nd = 2 if a.get("direction") == "bidirectional" else 1
        fill("activations", ["Sigmoid", "Tanh", "Tanh"] * nd)
    elif kind == "Resize":
        sizes, scales = a.get("sizes"), a.get("scales")
        if sizes is None and isinstance(scales, list) and len(scales) == x.rank:
            a["sizes"] = [int(math.floor(d * s)) for d, s in zip(x.shape, scales)]
        elif scales is None and isinstance(sizes, list) and len(sizes) == x.rank:
            a["scales"] = [float(s) / d if d else 1.0 for s, d in zip(sizes, x.shape)]
    return a


def equal_split(dim: int, n: int) -> list[int]:
    """ONNX's split into n parts: ceil(dim/n) each, the last one smaller (opset 18)."""
    chunk = -(-dim // n)
    sizes = [min(chunk, max(0, dim - i * chunk)) for i in range(n)]
    return sizes
