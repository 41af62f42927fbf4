"""The blocked channel layout NCHW{c}c and the LayoutTransform op that converts to and from it.

An NCHW activation [N, C, H, W] with C % c == 0 is stored blocked as [N, C/c, H, W, c]:
blocked[n, cb, h, w, i] = nchw[n, cb*c + i, h, w]. Conv and the pools take a `layout` attr
("NCHW", the ONNX meaning, or "NCHW{c}c"); a blocked Conv's weights are 6-D (see
block_conv_weight). The numpy helpers here are what passes, kernels and the exporter share.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..ir import Op, TensorType
from ..opdef import REQUIRED, OpRuleError, opdef
from ._util import fmt, operand

_BLOCKED = re.compile(r"NCHW([1-9][0-9]*)c\Z")


@dataclass(frozen=True)
class Layout:
    """An activation layout: NCHW (block None) or NCHW{c}c (block c). Ops hold these in
    their `layout` (LayoutTransform: `src_layout`, `dst_layout`) attributes; the text IR
    and error messages spell them "NCHW" / "NCHW16c" (`str(layout)`)."""
    block: int | None = None

    def __post_init__(self):
        if self.block is not None and (not isinstance(self.block, int) or self.block < 1):
            raise OpRuleError(f"layout block {self.block!r} must be a positive int")

    @staticmethod
    def parse(text) -> "Layout":
        """"NCHW" -> NCHW, "NCHW16c" -> Layout(16); a Layout is returned as it is; anything
        else is an OpRuleError."""
        if isinstance(text, Layout):
            return text
        if text == "NCHW":
            return NCHW
        m = _BLOCKED.match(text) if isinstance(text, str) else None
        if m is None:
            raise OpRuleError(f"layout {text!r} is neither 'NCHW' nor 'NCHW{{c}}c' "
                              f"(e.g. 'NCHW16c')")
        return Layout(int(m.group(1)))

    @staticmethod
    def blocked(c: int) -> "Layout":
        return Layout(int(c))

    @property
    def is_blocked(self) -> bool:
        return self.block is not None

    def __str__(self) -> str:
        return "NCHW" if self.block is None else f"NCHW{self.block}c"

    def __repr__(self) -> str:
        return f"Layout({str(self)!r})"


NCHW = Layout()


def layout_of(op: Op, name: str = "layout") -> Layout:
    """The Layout in op's attribute `name` (NCHW when the op has none, e.g. ONNX-shaped ops
    built without canonicalization)."""
    v = op.attrs.get(name, NCHW)
    return v if isinstance(v, Layout) else Layout.parse(v)


def layout_attr(op: Op, name: str = "layout") -> int | None:
    """The block size c of op's layout attribute (None for NCHW); errors name the op."""
    v = op.attrs.get(name)
    if isinstance(v, Layout):
        return v.block
    try:
        return Layout.parse(v).block
    except OpRuleError:
        raise OpRuleError(f"{op.kind}: attribute {name}={v!r} must be 'NCHW' "
                          f"or 'NCHW{{c}}c' with c >= 1 (e.g. 'NCHW16c')") from None


def need_blocked(kind: str, what: str, t: TensorType, c: int) -> None:
    """`t` is a blocked activation [N, C/c, H, W, c] (2 spatial axes)."""
    if t.rank != 5:
        raise OpRuleError(f"{kind}: layout NCHW{c}c needs {what} of rank 5 [N,C/{c},H,W,{c}] "
                          f"(2-D spatial only), got {fmt(t.shape)}")
    if t.shape[-1] != c:
        raise OpRuleError(f"{kind}: layout NCHW{c}c needs the last axis of {what} to be {c}, "
                          f"got {fmt(t.shape)}")


@opdef("LayoutTransform", ["X"], {"src_layout": REQUIRED, "dst_layout": REQUIRED},
       traits=("movement", "injective", "quant_transparent"))
def _layout_transform(op):
    """LayoutTransform(X): NCHW [N,C,H,W] <-> NCHW{c}c [N,C/c,H,W,c] (pure data movement)."""
    x = operand(op, 0)
    src, dst = layout_attr(op, "src_layout"), layout_attr(op, "dst_layout")
    if (src is None) == (dst is None):
        raise OpRuleError(f"LayoutTransform: exactly one of src_layout="
                          f"'{op.attrs['src_layout']}' and dst_layout='{op.attrs['dst_layout']}' "
                          f"must be 'NCHW' (it converts NCHW <-> NCHW{{c}}c)")
    if src is not None:
        need_blocked("LayoutTransform", "X", x, src)
        n, cb, h, w, c = x.shape
        return [TensorType(x.dtype, (n, cb * c, h, w))]
    if x.rank != 4:
        raise OpRuleError(f"LayoutTransform: src_layout 'NCHW' needs a rank-4 X [N,C,H,W], "
                          f"got {fmt(x.shape)}")
    n, ch, h, w = x.shape
    if ch % dst:
        raise OpRuleError(f"LayoutTransform: {ch} channels of X {fmt(x.shape)} are not "
                          f"divisible by the block size {dst} of dst_layout "
                          f"'{op.attrs['dst_layout']}'")
    return [TensorType(x.dtype, (n, ch // dst, h, w, dst))]


# ---- numpy helpers ---------------------------------------------------------------------------

def block_nchw(a: np.ndarray, c: int) -> np.ndarray:
    """[N, C, H, W] -> [N, C/c, H, W, c] (contiguous)."""
    if a.ndim != 4 or a.shape[1] % c:
        raise ValueError(f"block_nchw: need [N,C,H,W] with C divisible by {c}, "
                         f"got {list(a.shape)}")
    n, ch, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, ch // c, c, h, w).transpose(0, 1, 3, 4, 2))


def unblock_nchw(a: np.ndarray) -> np.ndarray:
    """[N, C/c, H, W, c] -> [N, C, H, W] (contiguous; c = a.shape[-1])."""
    if a.ndim != 5:
        raise ValueError(f"unblock_nchw: need [N,C/c,H,W,c], got {list(a.shape)}")
    n, cb, h, w, c = a.shape
    return np.ascontiguousarray(a.transpose(0, 1, 4, 2, 3)).reshape(n, cb * c, h, w)


def block_conv_weight(w: np.ndarray, c: int, depthwise: bool, ci: int | None = None) \
        -> np.ndarray:
    """Conv weights [M, C/g, kh, kw] -> the blocked form (contiguous):
    group 1:   [M/c, C/c, kh, kw, c, c]   W6[mb, cb, y, x, i, o] = W[mb*c+o, cb*c+i, y, x]
    group 1, NCHW input (ci=1): [M/c, C, kh, kw, 1, c]
    depthwise: [M/c, 1, kh, kw, 1, c]     W6[mb, 0, y, x, 0, o] = W[mb*c+o, 0, y, x]"""
    ci = 1 if depthwise else (c if ci is None else ci)      # input lanes per block
    if w.ndim != 4 or w.shape[0] % c or w.shape[1] % ci or (depthwise and w.shape[1] != 1):
        raise ValueError(f"block_conv_weight: need [M,C/g,kh,kw] with M and (unless depthwise) "
                         f"C divisible by {c}, depthwise C/g = 1; got {list(w.shape)}")
    m, cg, kh, kw = w.shape
    w = w.reshape(m // c, c, cg // ci, ci, kh, kw)          # [mb, o, cb, i, y, x]
    return np.ascontiguousarray(w.transpose(0, 2, 4, 5, 3, 1))


def unblock_conv_weight(w6: np.ndarray) -> np.ndarray:
    """Inverse of block_conv_weight (group 1 or depthwise, read from the shape)."""
    if w6.ndim != 6:
        raise ValueError(f"unblock_conv_weight: need a 6-D weight, got {list(w6.shape)}")
    mb, cb, kh, kw, ci, c = w6.shape
    return np.ascontiguousarray(w6.transpose(0, 5, 1, 4, 2, 3)).reshape(mb * c, cb * ci, kh, kw)


__all__ = ["Layout", "NCHW", "layout_of", "layout_attr", "need_blocked", "block_nchw",
           "unblock_nchw", "block_conv_weight", "unblock_conv_weight"]
