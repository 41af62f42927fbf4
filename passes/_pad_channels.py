"""Output channels padded to whole blocks, for convert-layout (passes/convert_layout.py).

A group-1 Conv whose M output channels are not a multiple of the block c (squeezenet's
1000-class conv) cannot run blocked. Padded to M' = ceil(M/c)*c channels with zero weights
and zero bias it can; a Slice keeps the first M channels, once the values are pooled to
[N, C, 1, 1] (elsewhere the Slice would copy a whole map: not padded). It moves down past the
channel-independent ops that read the conv alone (activations, pools, elementwise ops with
scalar or per-channel constants, those padded with their last channel's value so no
division by zero appears; views of a pooled [N, C, 1, 1]), so they run blocked too:

    Conv[M] -> Relu -> GlobalAveragePool -> Reshape[N, M] -> Softmax          becomes
    Conv[M'] -> Relu -> GlobalAveragePool -> Reshape[N, M'] -> Slice[:M] -> Softmax

(fuse-kernels then reads the Slice inside the Softmax kernel: no extra launch).
Results are identical: the kept channels compute exactly what they did.
"""
from __future__ import annotations

import math

import numpy as np

from edgecc.ir import Graph, Op, Value, unique_name
from edgecc.ops.layout import layout_of
from edgecc.ops import build_op, has_trait

from ._rewrite import const, single_user

MAX_PADDED_FRACTION = 1 / 8      # extra channels per real one: more work than that is waste


def paddable(op: Op, c: int) -> bool:
    """A 2-D group-1 Conv (constant weights) whose output channels are not whole blocks of
    `c` but whose input channels are, padded for at most MAX_PADDED_FRACTION more work."""
    if op.kind != "Conv" or op.inputs[0].type.rank != 4 or op.attrs["group"] != 1:
        return False
    if layout_of(op).is_blocked or const(op.inputs[1]) is None:
        return False
    if len(op.inputs) > 2 and op.inputs[2] is not None and const(op.inputs[2]) is None:
        return False
    ch, m = op.inputs[0].type.shape[1], op.output.type.shape[1]
    extra = -m % c
    return ch % c == 0 and 0 < extra <= m * MAX_PADDED_FRACTION


def pad_output_channels(graph: Graph, c: int, only: set[str] | None = None) -> list[str]:
    """Pad every paddable conv (of those named in `only`, when given); returns their names."""
    padded = []
    for op in list(graph.ops):
        if paddable(op, c) and (only is None or op.name in only) and _pad(graph, op, c):
            padded.append(op.name)
    return padded


def _pad(graph: Graph, conv: Op, c: int) -> bool:
    """Pad `conv` unless the Slice would land on a whole activation map: there it is one
    more kernel copying the map (ppocr_cls's 1x1 convs before depthwise ones: 1.07x slower
    padded); on a pooled [N, C, 1, 1] it is a few bytes, or read inside the next kernel."""
    params = list(graph.params)
    users = graph.users()
    taken = {v.name for v in graph.values()}
    m = conv.output.type.shape[1]
    extra = -m % c
    w, b = conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else None
    ins = [conv.inputs[0], _padded_param(graph, w, extra, taken, zeros=True)]
    if b is not None:
        ins.append(_padded_param(graph, b, extra, taken, zeros=True))
    new_ops = [build_op("Conv", ins, dict(conv.attrs), name=conv.name,
                        out_names=[unique_name(f"{conv.output.name}_padded", taken)])]
    old_ops, old = [conv], conv.output
    while True:
        u = single_user(users, graph, old)
        twin = u and _channel_independent_twin(graph, u, old, new_ops[-1].output, extra, taken)
        if twin is None:
            break
        new_ops.append(twin)
        old_ops.append(u)
        old = u.output
    if math.prod(old.type.shape[2:]) > 1:
        graph.params = params
        return False
    keep = build_op("Slice", [new_ops[-1].output],
                    {"starts": [0], "ends": [m], "axes": [1], "steps": [1]},
                    name=f"{conv.name}_unpad", out_names=[unique_name(f"{old.name}_unpadded",
                                                                     taken)])
    new_ops.append(keep)
    at = graph.ops.index(old_ops[-1])
    graph.ops[at:at + 1] = new_ops
    graph.ops = [op for op in graph.ops if op not in old_ops]
    if old in graph.outputs:            # graph outputs keep their names
        old.name, keep.output.name = f"{old.name}.dead", old.name
    graph.replace_all_uses(old, keep.output)
    return True


def _channel_independent_twin(graph: Graph, op: Op, old: Value, new: Value, extra: int,
                              taken: set[str]) -> Op | None:
    """`op` reading the padded `new` instead of `old`, when each channel of its result
    depends only on the same channel of `old` (None otherwise)."""
    if len(op.outputs) != 1:
        return None
    if has_trait(op, "reshape") and _keeps_channel_axis(old, op.output):
        n, ch = new.type.shape[:2]
        shape = [n, ch] + list(op.output.type.shape[2:])
        return build_op("Reshape", [new], {"shape": shape}, name=op.name,
                        out_names=[unique_name(f"{op.output.name}_padded", taken)])
    if op.output.type.rank != 4:
        return None
    if has_trait(op, "pool"):                    # channels pooled independently
        if layout_of(op).is_blocked or op.inputs[0] is not old:
            return None
        ins = [new]
    elif has_trait(op, "elementwise"):
        if op.output.type.shape != old.type.shape:
            return None
        ins = []
        for v in op.inputs:
            if v is old:
                ins.append(new)
            elif v is not None and v.data is not None and _per_channel(v.data, old):
                ins.append(_padded_param(graph, v, extra, taken, zeros=False)
                           if v.data.ndim >= 3 and v.data.shape[-3] > 1 else v)
            else:
                return None
    else:
        return None
    return build_op(op.kind, ins, dict(op.attrs), name=op.name,
                    out_names=[unique_name(f"{op.output.name}_padded", taken)])


def _keeps_channel_axis(x: Value, y: Value) -> bool:
    """A view [N, C, 1, ...] -> [N, C, 1, ...] (e.g. a pooled [N, C, 1, 1] to [N, C])."""
    a, b = x.type.shape, y.type.shape
    return (len(a) >= 2 and len(b) >= 2 and a[:2] == b[:2]
            and all(d == 1 for d in a[2:]) and all(d == 1 for d in b[2:]))


def _per_channel(a: np.ndarray, x: Value) -> bool:
    """`a` broadcasts against [N, C, H, W] as a scalar or one value per channel."""
    ch = x.type.shape[1]
    if a.ndim > 4:
        return False
    a4 = a.reshape((1,) * (4 - a.ndim) + a.shape)
    return a4.shape[0] == 1 and a4.shape[2:] == (1, 1) and a4.shape[1] in (1, ch)


def _padded_param(graph: Graph, v: Value, extra: int, taken: set[str], zeros: bool) -> Value:
    """Weight `v` with `extra` more output channels (axis 0 of a conv weight or bias, the
    channel axis -3 of a per-channel constant): zeros, or copies of the last channel."""
    a = v.data
    axis = 0 if zeros else a.ndim - 3
    widths = [(0, extra if i == axis else 0) for i in range(a.ndim)]
    p = graph.add_param(f"{v.name}_padded",
                        np.pad(a, widths, mode="constant" if zeros else "edge"))
    taken.add(p.name)
    return p
