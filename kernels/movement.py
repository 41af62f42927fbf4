"""Data movement ops (exact, numpy indexing). Results are contiguous copies so a slice
never keeps a large input alive after the executor frees it."""
from __future__ import annotations

import numpy as np

from edgecc.quant import stored_value

from .registry import contiguous, kernel

_out = contiguous  # (never np.ascontiguousarray: it turns a 0-d result into shape [1])


@kernel("Reshape")
def _reshape(op, ins):
    return [_out(ins[0].reshape(op.attrs["shape"]))]


@kernel("Flatten")
def _flatten(op, ins):
    x, axis = ins[0], op.attrs["axis"]
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis:], dtype=np.int64))
    return [_out(x.reshape(outer, inner))]


@kernel("Transpose")
def _transpose(op, ins):
    return [_out(np.transpose(ins[0], op.attrs["perm"]))]


@kernel("Squeeze")
def _squeeze(op, ins):
    return [_out(np.squeeze(ins[0], axis=tuple(op.attrs["axes"])))]


@kernel("Unsqueeze")
def _unsqueeze(op, ins):
    return [_out(np.expand_dims(ins[0], tuple(op.attrs["axes"])))]


@kernel("Expand")
def _expand(op, ins):
    return [_out(np.broadcast_to(ins[0], tuple(op.attrs["shape"])))]


@kernel("Tile")
def _tile(op, ins):
    return [_out(np.tile(ins[0], tuple(op.attrs["repeats"])))]


@kernel("Concat")
def _concat(op, ins):
    return [np.concatenate(ins, axis=op.attrs["axis"])]


@kernel("Split")
def _split(op, ins):
    x, axis, sizes = ins[0], op.attrs["axis"], op.attrs["split"]
    if sum(sizes) != x.shape[axis]:
        raise ValueError(f"split sizes {list(sizes)} do not sum to dim {x.shape[axis]}")
    bounds = np.cumsum(sizes)[:-1]
    return [_out(part) for part in np.split(x, bounds, axis=axis)]


@kernel("Slice")
def _slice(op, ins):
    x, a = ins[0], op.attrs
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        if step == 0:
            raise ValueError("Slice step is 0")
        # canonical ends are clamped; -1 with a negative step means "through index 0"
        index[axis] = slice(start, None if (step < 0 and end < 0) else end, step)
    return [_out(x[tuple(index)])]


def _normalize_indices(indices: np.ndarray, dim: int) -> np.ndarray:
    idx = indices.astype(np.int64)
    if np.any((idx < -dim) | (idx >= dim)):
        bad = idx[(idx < -dim) | (idx >= dim)].flat[0]
        raise IndexError(f"index {bad} is out of range for an axis of size {dim}")
    return np.where(idx < 0, idx + dim, idx)


@kernel("Gather")
def _gather(op, ins):
    data, indices = ins
    axis = op.attrs["axis"]
    return [_out(np.take(data, _normalize_indices(indices, data.shape[axis]), axis=axis))]


@kernel("GatherElements")
def _gather_elements(op, ins):
    data, indices = ins
    axis = op.attrs["axis"]
    idx = _normalize_indices(indices, data.shape[axis])
    # out[i..., j, k...] = data[i..., idx[i..., j, k...], k...]; indices may be smaller
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    return [_out(data[tuple(grid)])]


@kernel("Pad")
def _pad(op, ins):
    x, pads, mode = ins[0], list(op.attrs["pads"]), op.attrs["mode"]
    r = x.ndim
    begins, ends = pads[:r], pads[r:]
    # negative pads crop first
    x = x[tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0))
                for i, (b, e) in enumerate(zip(begins, ends)))]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
    if mode == "constant":
        value = stored_value(op.attrs["value"], op.inputs[0].type)   # quantized X: q(value)
        value = x.dtype.type(value) if x.dtype.kind != "b" else bool(value)
        return [np.pad(x, widths, mode="constant", constant_values=value)]
    if mode not in ("reflect", "edge", "wrap"):
        raise ValueError(f"unknown Pad mode '{mode}'")
    return [np.pad(x, widths, mode=mode)]


@kernel("DepthToSpace")
def _depth_to_space(op, ins):
    x, b, mode = ins[0], op.attrs["blocksize"], op.attrs["mode"]
    n, c, h, w = x.shape
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise ValueError(f"unknown DepthToSpace mode '{mode}'")
    return [_out(t.reshape(n, c // (b * b), h * b, w * b))]


@kernel("SpaceToDepth")
def _space_to_depth(op, ins):
    x, b = ins[0], op.attrs["blocksize"]
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return [_out(t.reshape(n, c * b * b, h // b, w // b))]
