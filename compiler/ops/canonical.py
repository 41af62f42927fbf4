"""canonicalize_attrs: fill the attributes whose defaults depend on operand ranks or shapes.

Op declarations give such attributes the default None and a `canonicalize` hook (on their
@opdef) that fills them in; build_op calls this after completing the other defaults.
Inference never fills anything in: a canonical op holds every attribute. Values that are
already given are kept (only their Python types are normalised: tuples and 1-D integer arrays
become lists, numpy scalars become int/float, layout names become Layout values).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..ir import TensorType
from ..opdef import OpRuleError, get_opdef
from .layout import Layout


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
    for key in layout_keys(kind):           # the text IR and tests give layouts as strings
        if isinstance(a.get(key), str):
            try:
                a[key] = Layout.parse(a[key])
            except OpRuleError:
                raise OpRuleError(f"{kind}: attribute {key}={a[key]!r} must be 'NCHW' or "
                                  f"'NCHW{{c}}c' with c >= 1 (e.g. 'NCHW16c')") from None
    d = get_opdef(kind)
    if d is not None and d.canonicalize is not None:
        d.canonicalize(a, list(input_types), num_outputs)
    return a


def layout_keys(kind: str) -> tuple[str, ...]:
    """The attributes of `kind` that hold a Layout."""
    d = get_opdef(kind)
    if d is None:
        return ()
    return tuple(k for k in d.attrs if k == "layout" and "layout_aware" in d.traits
                 or k in ("src_layout", "dst_layout"))


def fill(a: dict, name: str, value) -> None:
    """Set attribute `name` unless it is given."""
    if a.get(name) is None:
        a[name] = value
