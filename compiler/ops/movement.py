"""Data movement ops (shape arguments are resolved attributes)."""
from __future__ import annotations

import math
import numbers
from typing import Sequence

from ..ir import TensorType
from ..opdef import REQUIRED, OpRuleError, opdef
from .canonical import fill
from ._util import (NUMERIC_DTYPES, attr_axes, attr_axis, attr_choice, attr_float, attr_int,
                    attr_ints, broadcast_shapes, fmt, need_dtype, need_rank, operand, same_dtype)


def _numel(shape) -> int:
    return math.prod(shape)


MOVE = ("movement", "injective", "quant_transparent")     # a kernel can read through them
VIEW = ("view", "reshape", "movement", "quant_transparent")  # the same bytes, another shape


def _always(op) -> bool:                  # (is_noop checked that the shapes agree)
    return True


def _canon_transpose(a, types, n):
    if types and types[0] is not None:
        fill(a, "perm", list(range(types[0].rank))[::-1])


def _canon_squeeze(a, types, n):
    if types and types[0] is not None:
        fill(a, "axes", [i for i, d in enumerate(types[0].shape) if d == 1])


def _canon_slice(a, types, n):
    if isinstance(a.get("starts"), list):
        k = len(a["starts"])
        fill(a, "axes", list(range(k)))
        fill(a, "steps", [1] * k)


def _canon_split(a, types, n):
    x = types[0] if types else None
    if x is not None and a.get("split") is None and n:
        axis = a.get("axis", 0)
        if isinstance(axis, int) and 0 <= axis < x.rank:
            a["split"] = equal_split(x.shape[axis], n)


def equal_split(dim: int, n: int) -> list[int]:
    """ONNX's split into n parts: ceil(dim/n) each, the last one smaller (opset 18)."""
    chunk = -(-dim // n)
    return [min(chunk, max(0, dim - i * chunk)) for i in range(n)]


def _canon_resize(a, types, n):
    x = types[0] if types else None
    if x is None:
        return
    sizes, scales = a.get("sizes"), a.get("scales")
    if sizes is None and isinstance(scales, list) and len(scales) == x.rank:
        a["sizes"] = [int(math.floor(d * s)) for d, s in zip(x.shape, scales)]
    elif scales is None and isinstance(sizes, list) and len(sizes) == x.rank:
        a["scales"] = [float(s) / d if d else 1.0 for s, d in zip(sizes, x.shape)]
    if a.get("roi") is None:    # the whole input for tf_crop_and_resize; no other mode reads it
        crop = a.get("coordinate_transformation_mode") == "tf_crop_and_resize"
        a["roi"] = [0.0] * x.rank + [1.0] * x.rank if crop else []


@opdef("Reshape", ["X"], {"shape": REQUIRED}, traits=VIEW, noop=_always)
def _reshape(op):
    """Reshape(X) to `shape` (final: no 0/-1 placeholders); element counts must agree."""
    x = operand(op, 0)
    shape = attr_ints(op, "shape")
    if any(d < 0 for d in shape):
        raise OpRuleError(f"Reshape: shape={shape} must be final (no -1; the importer "
                          f"resolves placeholders)")
    if _numel(shape) != x.numel:
        raise OpRuleError(f"Reshape: shape {fmt(shape)} has {_numel(shape)} elements, "
                          f"input {fmt(x.shape)} has {x.numel}")
    return [TensorType(x.dtype, shape)]


@opdef("Flatten", ["X"], {"axis": 1}, traits=VIEW, noop=_always)
def _flatten(op):
    """Flatten(X) to 2-D [prod(shape[:axis]), prod(shape[axis:])]."""
    x = operand(op, 0)
    axis = attr_axis(op, "axis", x.rank, inclusive_end=True)
    return [TensorType(x.dtype, (_numel(x.shape[:axis]), _numel(x.shape[axis:])))]


@opdef("Transpose", ["X"], {"perm": None}, traits=MOVE, canonicalize=_canon_transpose,
       noop=lambda op: list(op.attrs["perm"]) == sorted(op.attrs["perm"]))
def _transpose(op):
    """Transpose(X) by `perm` (filled in: reversed axes by default)."""
    x = operand(op, 0)
    perm = attr_ints(op, "perm")
    if sorted(perm) != list(range(x.rank)):
        raise OpRuleError(f"Transpose: perm={perm} is not a permutation of 0..{x.rank - 1} "
                          f"for input {fmt(x.shape)}")
    return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]


@opdef("Squeeze", ["X"], {"axes": None}, traits=VIEW, canonicalize=_canon_squeeze,
       noop=_always)
def _squeeze(op):
    """Squeeze(X): removes `axes`, each of size 1."""
    x = operand(op, 0)
    axes = attr_axes(op, "axes", x.rank)
    for a in axes:
        if x.shape[a] != 1:
            raise OpRuleError(f"Squeeze: axis {a} of {fmt(x.shape)} has size {x.shape[a]}, not 1")
    return [TensorType(x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes))]


@opdef("Unsqueeze", ["X"], {"axes": REQUIRED}, traits=VIEW, noop=_always)
def _unsqueeze(op):
    """Unsqueeze(X): inserts size-1 axes at `axes` (sorted, non-negative positions in the
    output)."""
    x = operand(op, 0)
    axes = attr_axes(op, "axes", x.rank + len(attr_ints(op, "axes")))
    dims = iter(x.shape)
    return [TensorType(x.dtype, tuple(1 if i in axes else next(dims)
                                      for i in range(x.rank + len(axes))))]


@opdef("Expand", ["X"], {"shape": REQUIRED}, traits=MOVE, noop=_always)
def _expand(op):
    """Expand(X) to `shape` (the final output shape, which X must broadcast to)."""
    x = operand(op, 0)
    shape = tuple(attr_ints(op, "shape", lo=0))
    try:
        ok = broadcast_shapes(x.shape, shape) == shape
    except OpRuleError:
        ok = False
    if not ok:
        raise OpRuleError(f"Expand: input {fmt(x.shape)} does not broadcast to shape "
                          f"{fmt(shape)}")
    return [TensorType(x.dtype, shape)]


@opdef("Concat", ["inputs*"], {"axis": REQUIRED}, traits=MOVE,
       noop=lambda op: len(op.inputs) == 1)
def _concat(op):
    """Concat(inputs*) along `axis`; other dimensions must agree."""
    types = [v.type for v in op.inputs]
    if not types:
        raise OpRuleError("Concat needs at least one operand")
    first = types[0]
    axis = attr_axis(op, "axis", first.rank)
    same_dtype("Concat", types)
    for i, t in enumerate(types[1:], 1):
        if t.rank != first.rank or any(a != b for j, (a, b) in
                                       enumerate(zip(t.shape, first.shape)) if j != axis):
            raise OpRuleError(f"Concat: operand {i} has shape {fmt(t.shape)} but operand 0 "
                              f"{fmt(first.shape)} differs outside axis {axis}")
    out = list(first.shape)
    out[axis] = sum(t.shape[axis] for t in types)
    return [TensorType(first.dtype, out)]


@opdef("Split", ["X"], {"axis": 0, "split": None}, outputs="*",
       traits=("movement", "quant_transparent"),
       canonicalize=_canon_split)
def _split(op):
    """Split(X) along `axis` into len(split) results of the given sizes (filled in: ONNX's
    equal split)."""
    x = operand(op, 0)
    axis = attr_axis(op, "axis", x.rank)
    split = attr_ints(op, "split", lo=0)
    if not split:
        raise OpRuleError("Split: split must list at least one size")
    if sum(split) != x.shape[axis]:
        raise OpRuleError(f"Split: split={split} sums to {sum(split)} but axis {axis} of "
                          f"{fmt(x.shape)} has {x.shape[axis]}")
    outs = []
    for s in split:
        shape = list(x.shape)
        shape[axis] = s
        outs.append(TensorType(x.dtype, shape))
    return outs


def slice_length(dim: int, start: int, end: int, step: int) -> int:
    if step > 0:
        return max(0, -(-(end - start) // step))
    return max(0, -(-(start - end) // -step))


def normalize_slice(shape: Sequence[int], starts, ends, axes=None, steps=None):
    """ONNX Slice arguments (negative / out-of-range indices, negative axes, defaults) ->
    the canonical (starts, ends, axes, steps) lists the Slice op holds."""
    n = len(starts)
    axes = list(range(n)) if axes is None else [a + len(shape) if a < 0 else a for a in axes]
    steps = [1] * n if steps is None else list(steps)
    cs, ce = [], []
    for s, e, a, st in zip(starts, ends, axes, steps):
        dim = shape[a]
        s, e = (s + dim if s < 0 else s), (e + dim if e < 0 else e)
        if st > 0:
            cs.append(min(max(s, 0), dim))
            ce.append(min(max(e, 0), dim))
        else:
            cs.append(min(max(s, 0), dim - 1))
            ce.append(min(max(e, -1), dim - 1))
    return cs, ce, [int(a) for a in axes], [int(s) for s in steps]


@opdef("Slice", ["X"], {"starts": REQUIRED, "ends": REQUIRED, "axes": None, "steps": None},
       traits=MOVE, canonicalize=_canon_slice,
       noop=lambda op: all(s > 0 for s in op.attrs["steps"]))  # same shape: every element
def _slice(op):
    """Slice(X): per listed axis, numpy X[start:end:step] with clamped (canonical) bounds."""
    x = operand(op, 0)
    starts = attr_ints(op, "starts")
    n = len(starts)
    ends = attr_ints(op, "ends", n, what="one per entry of starts")
    axes = attr_ints(op, "axes", n, what="one per entry of starts")
    steps = attr_ints(op, "steps", n, what="one per entry of starts")
    if len(set(axes)) != n:
        raise OpRuleError(f"Slice: axes={axes} repeats an axis")
    out = list(x.shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        if not 0 <= a < x.rank:
            raise OpRuleError(f"Slice: axis {a} is out of range [0, {x.rank - 1}] "
                              f"(canonical axes are non-negative)")
        if st == 0:
            raise OpRuleError(f"Slice: step for axis {a} is 0")
        dim = x.shape[a]
        lo, hi = (0, dim) if st > 0 else (-1, dim - 1)
        s_lo = lo if st > 0 else min(0, dim - 1)
        if not (s_lo <= s <= hi and lo <= e <= hi):
            raise OpRuleError(f"Slice: start {s} / end {e} (step {st}) on axis {a} of size "
                              f"{dim} are not clamped to the valid range [{s_lo}, {hi}] / "
                              f"[{lo}, {hi}]")
        out[a] = slice_length(dim, s, e, st)
    return [TensorType(x.dtype, out)]


def _indices(kind, t):
    need_dtype(kind, "indices", t, ("i32", "i64"), "i32 or i64")


@opdef("Gather", ["data", "indices"], {"axis": 0}, traits=("movement", "quant_transparent"))
def _gather(op):
    """Gather(data, indices) along axis -> data[:axis] + indices + data[axis+1:]; negative
    indices count from the end, as ONNX."""
    data, idx = operand(op, 0), operand(op, 1)
    _indices("Gather", idx)
    axis = attr_axis(op, "axis", data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


@opdef("GatherElements", ["data", "indices"], {"axis": 0},
       traits=("movement", "quant_transparent"))
def _gather_elements(op):
    """GatherElements(data, indices): result has the indices' shape."""
    data, idx = operand(op, 0), operand(op, 1)
    _indices("GatherElements", idx)
    axis = attr_axis(op, "axis", data.rank)
    if idx.rank != data.rank:
        raise OpRuleError(f"GatherElements: indices {fmt(idx.shape)} must have the rank of "
                          f"data {fmt(data.shape)}")
    for i, (d, n) in enumerate(zip(data.shape, idx.shape)):
        if i != axis and n > d:
            raise OpRuleError(f"GatherElements: indices {fmt(idx.shape)} exceed data "
                              f"{fmt(data.shape)} on axis {i} (only axis {axis} may differ)")
    return [TensorType(data.dtype, idx.shape)]


@opdef("Tile", ["X"], {"repeats": REQUIRED}, traits=MOVE, noop=_always)
def _tile(op):
    """Tile(X): dimension i repeated repeats[i] times."""
    x = operand(op, 0)
    reps = attr_ints(op, "repeats", x.rank, 0, f"one per axis of {fmt(x.shape)}")
    return [TensorType(x.dtype, tuple(d * r for d, r in zip(x.shape, reps)))]


@opdef("Pad", ["X"], {"pads": REQUIRED, "mode": "constant", "value": 0.0}, traits=MOVE,
       noop=lambda op: not any(op.attrs["pads"]))
def _pad(op):
    """Pad(X) by pads (begins then ends, negative crops) with mode constant/reflect/edge/wrap."""
    x = operand(op, 0)
    r = x.rank
    pads = attr_ints(op, "pads", 2 * r, what=f"begins then ends of {r} axes")
    mode = attr_choice(op, "mode", ("constant", "reflect", "edge", "wrap"))
    attr_float(op, "value")
    out = tuple(d + pads[i] + pads[r + i] for i, d in enumerate(x.shape))
    if any(d < 0 for d in out):
        raise OpRuleError(f"Pad: pads={pads} crop {fmt(x.shape)} to a negative size {fmt(out)}")
    for i, d in enumerate(x.shape):
        need = max(pads[i], pads[r + i])
        if mode == "reflect" and need > 0 and need >= d:
            raise OpRuleError(f"Pad: reflect pads={pads} need axis {i} (size {d}) to be larger "
                              f"than each pad")
        if mode in ("edge", "wrap") and need > 0 and d == 0:
            raise OpRuleError(f"Pad: {mode} padding of the empty axis {i} of {fmt(x.shape)}")
    return [TensorType(x.dtype, out)]


RESIZE_MODES = ("nearest", "linear", "cubic")
RESIZE_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                 "asymmetric", "tf_crop_and_resize")
RESIZE_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_onnx(op, opset):
    """antialias arrived in opset 18: Resize without it is written as opset 11's."""
    attrs = dict(op.attrs)
    if attrs.get("antialias"):
        return 18, attrs
    attrs.pop("antialias", None)
    return 11, attrs


@opdef("Resize", ["X"], {"sizes": None, "scales": None, "mode": "nearest",
                         "coordinate_transformation_mode": "half_pixel",
                         "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75,
                         "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
                         "roi": None},
       traits=MOVE, canonicalize=_canon_resize, onnx_form=_resize_onnx)
def _resize(op):
    """Resize(X) to `sizes` (filled in from scales); `scales` (a float per axis) are what the
    coordinate transform divides by. Opset <= 10 Upsample/Resize import as this with
    coordinate_transformation_mode="asymmetric". antialias (linear/cubic, downscaled axes):
    the interpolation kernel is stretched by 1/scale. tf_crop_and_resize samples the region
    `roi` (starts then ends, normalized, one pair per axis); outputs whose source falls
    outside the input are extrapolation_value."""
    x = operand(op, 0)
    need_dtype("Resize", "X", x, NUMERIC_DTYPES, "numeric (not bool)")
    sizes = attr_ints(op, "sizes", x.rank, 1, f"one per axis of {fmt(x.shape)}")
    scales = op.attrs.get("scales")
    if scales is None or len(scales) != x.rank:
        raise OpRuleError(f"Resize: scales={scales} must have {x.rank} entries "
                          f"(one per axis of {fmt(x.shape)})")
    if not all(isinstance(s, numbers.Real) and s > 0 for s in scales):
        raise OpRuleError(f"Resize: scales={list(scales)} must be positive numbers")
    if attr_choice(op, "mode", RESIZE_MODES) != "nearest" and x.quant is not None:
        raise OpRuleError("Resize: a quantized X can only be resized with mode nearest "
                          "(interpolation computes on real values)")
    ctm = attr_choice(op, "coordinate_transformation_mode", RESIZE_COORDS)
    roi = op.attrs.get("roi")
    if ctm == "tf_crop_and_resize":
        if not isinstance(roi, list) or len(roi) != 2 * x.rank or \
                not all(isinstance(r, numbers.Real) for r in roi):
            raise OpRuleError(f"Resize: tf_crop_and_resize needs roi, {2 * x.rank} numbers "
                              f"(starts then ends, one per axis of {fmt(x.shape)}), got {roi}")
    elif roi:
        raise OpRuleError(f"Resize: roi is read by tf_crop_and_resize only, not by '{ctm}'")
    attr_int(op, "antialias", 0, 1)
    attr_choice(op, "nearest_mode", RESIZE_NEAREST)
    attr_float(op, "cubic_coeff_a")
    attr_int(op, "exclude_outside", 0, 1)
    attr_float(op, "extrapolation_value")
    return [TensorType(x.dtype, sizes)]


GRID_MODES = ("bilinear", "nearest", "bicubic")
GRID_PADDING = ("zeros", "border", "reflection")


def _canon_grid(a, types, n):
    # opset 20 renamed the modes linear / cubic; the canonical form keeps opset 16's names
    a["mode"] = {"linear": "bilinear", "cubic": "bicubic"}.get(a.get("mode"), a.get("mode"))


def _grid_onnx(op, opset):
    """Opsets 16-19 spell the modes bilinear / bicubic (what runtimes implement), 20+
    linear / cubic."""
    attrs = dict(op.attrs)
    if opset >= 20:
        attrs["mode"] = {"bilinear": "linear", "bicubic": "cubic"}.get(attrs["mode"],
                                                                       attrs["mode"])
    return 16, attrs


@opdef("GridSample", ["X", "grid"], {"align_corners": 0, "mode": "bilinear",
                                     "padding_mode": "zeros"},
       canonicalize=_canon_grid, onnx="same", onnx_form=_grid_onnx)
def _grid_sample(op):
    """GridSample(X[N,C,H,W], grid[N,Ho,Wo,2]) -> [N,C,Ho,Wo]: X sampled where grid's
    (x, y) in [-1, 1] points (ONNX/PyTorch semantics: align_corners, bilinear/nearest/bicubic
    - opset 20 calls them linear/cubic -,
    zeros/border/reflection padding; coordinates in float32). 2-D images only."""
    x, g = operand(op, 0), operand(op, 1)
    need_dtype("GridSample", "X", x, ("f16", "f32", "f64"), "float")
    same_dtype("GridSample", [x, g], ["X", "grid"])
    if x.rank != 4:
        raise OpRuleError(f"GridSample: only 2-D images are supported: X must be [N,C,H,W], "
                          f"got {fmt(x.shape)}")
    if g.rank != 4 or g.shape[0] != x.shape[0] or g.shape[3] != 2:
        raise OpRuleError(f"GridSample: grid must be [N,Ho,Wo,2] with N={x.shape[0]}, got "
                          f"{fmt(g.shape)}")
    attr_choice(op, "mode", GRID_MODES)
    attr_choice(op, "padding_mode", GRID_PADDING)
    attr_int(op, "align_corners", 0, 1)
    return [TensorType(x.dtype, (x.shape[0], x.shape[1], g.shape[1], g.shape[2]))]


@opdef("DepthToSpace", ["X"], {"blocksize": REQUIRED, "mode": "DCR"}, traits=MOVE, onnx="same")
def _depth_to_space(op):
    """DepthToSpace(X[N,C,H,W]) -> [N, C/b², H·b, W·b]."""
    x = operand(op, 0)
    need_rank("DepthToSpace", "X", x, 4)
    b = attr_int(op, "blocksize", 1)
    attr_choice(op, "mode", ("DCR", "CRD"))
    n, c, h, w = x.shape
    if c % (b * b):
        raise OpRuleError(f"DepthToSpace: {c} channels of {fmt(x.shape)} are not divisible "
                          f"by blocksize²={b * b}")
    return [TensorType(x.dtype, (n, c // (b * b), h * b, w * b))]


@opdef("SpaceToDepth", ["X"], {"blocksize": REQUIRED}, traits=MOVE, onnx="same")
def _space_to_depth(op):
    """SpaceToDepth(X[N,C,H,W]) -> [N, C·b², H/b, W/b]."""
    x = operand(op, 0)
    need_rank("SpaceToDepth", "X", x, 4)
    b = attr_int(op, "blocksize", 1)
    n, c, h, w = x.shape
    if h % b or w % b:
        raise OpRuleError(f"SpaceToDepth: spatial size {h}x{w} of {fmt(x.shape)} is not "
                          f"divisible by blocksize={b}")
    return [TensorType(x.dtype, (n, c * b * b, h // b, w // b))]
