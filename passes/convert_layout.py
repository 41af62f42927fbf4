"""convert-layout: conv-heavy regions run in the blocked channel layout NCHW{c}c.

In NCHW a conv kernel vectorizes along the output row, which fits 7-, 14- or 28-wide rows
badly; in NCHW{c}c ([N, C/c, H, W, c], see compiler/ops/README.md) the c lanes of a vector
are c output channels whatever the image size, and the weights are packed at build time into
the order the kernel reads them ([M/c, C/c, kh, kw, c, c]).

  1. Seeds: 2-D Conv, group 1 or depthwise, whose output channels are whole blocks of c
     (and input channels too, except for group 1: a stem conv with 3 input channels reads
     its NCHW input as blocks of one lane, a view).
  2. Regions grow forward from the seeds through ops that do not care about the layout:
     elementwise ops (per-channel constants are re-blocked, other activations converted),
     Max/AveragePool, Global*Pool, LRN and channel Concat of whole blocks.
  3. A region is kept only if its convolutions do enough work per element it converts:
     a conversion moves every element once, so a region of depthwise convs between two
     conversions costs more than it gains (MIN_MACS_PER_CONVERTED_ELEMENT).
  4. c is the target's f32 vector lanes (16 AVX-512, 8 AVX2, 4 NEON): half vectors on
     AVX-512 measured slower than NCHW (ppocr_det 1.18x), so channel counts c does not
     divide keep their convs in NCHW, except output channels that padding to whole blocks
     makes at most 1/8 more work (passes/_pad_channels.py: squeezenet's 1000 classes run
     as 1008, a Slice drops the extra ones after the ops that keep channels apart; padded
     only when the conv's region is kept). A value is converted at most once each way
     (LayoutTransform), where a region reads an NCHW value or an NCHW op (or a graph
     output) reads a blocked one;
     for a [N, C, 1, 1] value (after a global pool) both layouts are the same bytes, so the
     conversion is a Reshape (a view, no kernel).

A Flatten of a blocked value that only Gemm/MatMul with constant weights read (a CNN's
classifier) flattens the blocked value directly, the weights' K axis permuted to match.
Graph inputs and outputs keep their NCHW layout and names. The blocked ops compute the same
sums in the same order; only a permuted classifier adds its terms in another order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecc.errors import UsageError
from edgecc.ir import Graph, Op, TensorType, Value, unique_name
from edgecc.ops import build_op
from edgecc.ops import count_flops, has_trait
from edgecc.ops.layout import NCHW, Layout, layout_of
from edgecc.pass_registry import register_pass

from ._pad_channels import pad_output_channels
from ._rewrite import ROUNDING_TOLERANCE, const, record_refusal

MIN_BLOCK = 4                       # NEON: 4 f32 lanes
# a conversion reads and writes each element once; below this many conv multiply-adds per
# converted element the conversions cost more than the faster convs save
MIN_MACS_PER_CONVERTED_ELEMENT = 32


def blockable_conv(op: Op, c: int) -> str | None:
    """Why `op` cannot be a blocked-conv seed with blocks of `c` (None when it can)."""
    x, w = op.inputs[0], op.inputs[1]
    if x.type.rank != 4:
        return "not a 2-D convolution"
    if layout_of(op).is_blocked:
        return "already blocked"
    if const(w) is None or (len(op.inputs) > 2 and op.inputs[2] is not None
                            and const(op.inputs[2]) is None):
        return "weights are not constants (they are packed at build time)"
    ch, m, group = x.type.shape[1], op.output.type.shape[1], op.attrs["group"]
    if group != 1 and not (group == ch == m):
        return f"grouped convolution (group={group}) is neither dense nor depthwise"
    if m % c or (ch % c and group != 1):
        return f"channels {ch} -> {m} are not multiples of {c}"
    return None


def reads_nchw(op: Op, c: int) -> bool:
    """A blocked conv whose input channels are not whole blocks reads its NCHW input as
    [N, C, H, W, 1] (a view: blocks of one lane)."""
    return op.kind == "Conv" and op.inputs[0].type.rank == 4 and op.inputs[0].type.shape[1] % c


def agnostic(op: Op, c: int) -> bool:
    """Ops that compute the same in the blocked layout, given blocked operands."""
    if len(op.outputs) != 1 or op.output.type.rank != 4 or op.output.type.shape[1] % c:
        return False
    if any(v is not None and v.type.quant is not None for v in op.inputs + op.outputs):
        return False                           # int8 values keep NCHW (their kernels' layout)
    if has_trait(op, "layout_aware"):          # pools, LRN (not Conv: a seed, see above)
        return not layout_of(op).is_blocked
    if op.kind == "Concat":
        return op.attrs["axis"] in (1, -3) and all(
            v.data is None and v.type.shape[1] % c == 0 for v in op.inputs)
    if has_trait(op, "elementwise"):
        # activations of the result's channel count (a [N, 1, H, W] map is not whole blocks)
        return all(v.type.rank == 4 and v.type.shape[1] == op.output.type.shape[1]
                   for v in activations(op))
    return False


def activations(op: Op) -> list[Value]:
    return [v for v in op.inputs if v is not None and v.data is None]


def macs(op: Op) -> int:
    return count_flops(op) // 2 if op.kind == "Conv" else 0


def regions(graph: Graph, c: int, why: dict[Op, str]) -> list[set[Op]]:
    """Connected groups of ops that may run with blocks of `c` (steps 1-2 of the module
    doc); `why` gets the reason each conv left out was refused."""
    blocked: set[Op] = set()
    for op in graph.ops:
        if op.kind == "Conv":
            reason = blockable_conv(op, c)
            if reason is None:
                blocked.add(op)
            else:
                why[op] = reason
        elif agnostic(op, c) and any(v.producer in blocked for v in activations(op)):
            blocked.add(op)
    parent = {op: op for op in blocked}

    def root(op):
        while parent[op] is not op:
            parent[op] = parent[parent[op]]
            op = parent[op]
        return op
    for op in blocked:
        for v in activations(op):
            if v.producer in blocked:
                parent[root(v.producer)] = root(op)
    groups: dict[Op, set[Op]] = {}
    for op in blocked:
        groups.setdefault(root(op), set()).add(op)
    order = {op: i for i, op in enumerate(graph.ops)}
    return sorted(groups.values(), key=lambda g: min(order[o] for o in g))


def converted_elements(graph: Graph, region: set[Op], users, c: int) -> int:
    """Elements the conversions into and out of `region` move ([N, C, 1, 1] ones are free)."""
    inside = {v for op in region for v in op.outputs}
    into = {v for op in region for v in activations(op)
            if v not in inside and not reads_nchw(op, c)}
    out = {v for v in inside
           if v in graph.outputs or any(u not in region for u in users.get(v, []))}
    return sum(v.type.numel for v in into | out if v.type.shape[2] * v.type.shape[3] > 1)


@register_pass
@dataclass(frozen=True)
class ConvertLayout:
    name = "convert-layout"
    tolerance = ROUNDING_TOLERANCE   # a permuted classifier sums in another order
    block: int = 0         # c of NCHW{c}c; 0: the target's f32 vector lanes

    def run(self, graph: Graph, ctx) -> bool:
        c = max(self.block or _target_lanes(ctx), MIN_BLOCK)
        # convs padded to whole blocks: only those whose region is then kept (on a trial copy)
        trial = graph.clone()
        padded = set(pad_output_channels(trial, c))
        if padded:
            kept = {op.name for op in self._choose(trial, c, None)[0] if op.name in padded}
            padded = set(pad_output_channels(graph, c, only=kept)) if kept else set()
        chosen, why = self._choose(graph, c, ctx)
        if not chosen:
            return False
        conversions = _rewrite(graph, chosen, c)
        if ctx is not None and hasattr(ctx, "remark"):
            extra = f", {len(padded)} padded to whole blocks" if padded else ""
            ctx.remark(self.name, f"{sum(op.kind == 'Conv' for op in chosen)} convs blocked by "
                                  f"{c}{extra}, {conversions} layout conversions")
        return True

    def _choose(self, graph: Graph, c: int, ctx) -> tuple[set[Op], dict[Op, str]]:
        """The ops of the profitable regions; refusals are recorded when `ctx` is given."""
        users = graph.users()
        chosen: set[Op] = set()
        why: dict[Op, str] = {}
        for region in regions(graph, c, why):
            work = sum(macs(op) for op in region)
            moved = converted_elements(graph, region, users, c)
            if work >= MIN_MACS_PER_CONVERTED_ELEMENT * moved:
                chosen |= region
                continue
            for op in region:
                if op.kind == "Conv":
                    why[op] = (f"its region does {work / max(moved, 1):.0f} multiply-adds per "
                               f"converted element, fewer than {MIN_MACS_PER_CONVERTED_ELEMENT}")
        if ctx is not None:
            for op in graph.ops:
                if op.kind == "Conv" and op not in chosen and why.get(op) != "already blocked":
                    record_refusal(ctx, self.name, op, why[op])
        return chosen, why


def _target_lanes(ctx) -> int:
    """The target's f32 vector lanes; a pass never guesses them from the machine it runs on."""
    target = getattr(ctx, "target", None)
    if target is None:
        raise UsageError("convert-layout blocks channels by the target's f32 vector lanes and "
                         "has no target: give one (edgecc-opt --target/--mcpu, "
                         "PassManager(target=...)) or a block size: "
                         "-p 'convert-layout{block=16}'")
    return target.lanes("f32")


def _rewrite(graph: Graph, chosen: set[Op], c: int) -> int:
    """Rebuild the op list with `chosen` ops blocked; returns the conversions inserted.

    A value a chosen op produced exists afterwards only as its blocked twin (named with a
    `_nchw{c}c` suffix); NCHW readers and graph outputs get one NCHW copy under its name."""
    from edgecc.ops.layout import block_conv_weight
    taken = {v.name for v in graph.values()}
    twin: dict[Value, Value] = {}           # value of a chosen op -> its blocked result
    nchw_copy: dict[Value, Value] = {}      # value of a chosen op -> NCHW copy, same name
    converted: dict[tuple, Value] = {}      # (NCHW value or weight, c) -> blocked operand
    ops: list[Op] = []

    def transform(v: Value, src: Layout, dst: Layout, out: str) -> Value:
        n, h, w = v.type.shape[0], v.type.shape[2], v.type.shape[3]
        if h * w == 1:      # [N, C, 1, 1] and [N, C/c, 1, 1, c] are the same bytes: a view
            ch = v.type.shape[1] * (v.type.shape[-1] if src.is_blocked else 1)
            shape = [n, ch // c, 1, 1, c] if dst.is_blocked else [n, ch, 1, 1]
            t = build_op("Reshape", [v], {"shape": shape}, name=f"{out}_layout",
                         out_names=[out])
        else:
            t = build_op("LayoutTransform", [v], {"src_layout": src, "dst_layout": dst},
                         name=f"{out}_layout", out_names=[out])
        ops.append(t)
        return t.output

    def nchw(v: Value | None) -> Value | None:
        if v not in twin:
            return v
        if v not in nchw_copy:
            nchw_copy[v] = transform(twin[v], Layout(twin[v].type.shape[-1]), NCHW, v.name)
        return nchw_copy[v]

    def blocked(v: Value, weight_of: Op | None = None, lanes: int = c) -> Value:
        """`v` as a blocked operand: blocks of `lanes` (1: an NCHW input viewed as
        [N, C, H, W, 1]); `weight_of`: v is that conv's weight."""
        if v in twin:
            return twin[v]
        key = (v, lanes)
        if key not in converted:
            name = unique_name(f"{v.name}_nchw{1 if v.data is None and lanes == 1 else c}c",
                               taken)
            if weight_of is not None:
                depthwise = weight_of.attrs["group"] != 1
                converted[key] = _param(graph, name,
                                        block_conv_weight(v.data, c, depthwise, ci=lanes))
            elif v.data is not None:
                converted[key] = _param(graph, name, _block_const(v.data, c))
            elif lanes == 1:
                t = build_op("Reshape", [v], {"shape": list(v.type.shape) + [1]},
                             name=f"{name}_view", out_names=[name])
                ops.append(t)
                converted[key] = t.output
            else:
                converted[key] = transform(v, NCHW, Layout(c), name)
        return converted[key]

    users = graph.users()
    dense_weights: dict[Op, Value] = {}     # Gemm/MatMul -> weights permuted to blocked order
    for op in graph.ops:
        if op not in chosen:
            x = op.inputs[0] if op.inputs else None
            if x in twin and flattened_into_dense(graph, op, users):
                # flatten the blocked value itself; the dense weights take its element order
                perm = blocked_flat_order(twin[x].type.shape)
                for d in users[op.output]:
                    b = d.inputs[1]
                    along_k = 1 if d.kind == "Gemm" and d.attrs["transB"] else 0
                    dense_weights[d] = _param(graph, unique_name(f"{b.name}_blocked", taken),
                                              np.take(b.data, perm, axis=along_k))
                op.inputs = [twin[x]] + op.inputs[1:]
            elif op in dense_weights:
                op.inputs = [nchw(op.inputs[0]), dense_weights[op], *op.inputs[2:]]
            else:
                op.inputs = [nchw(v) for v in op.inputs]
            ops.append(op)
            continue
        ins = []
        lanes = 1 if reads_nchw(op, c) else c
        for i, v in enumerate(op.inputs):
            if v is None or (op.kind == "Conv" and i == 2):      # the bias stays [M]
                ins.append(v)
            elif op.kind == "Conv":
                ins.append(blocked(v, op if i == 1 else None, lanes))
            else:
                ins.append(blocked(v))
        attrs = dict(op.attrs)
        if has_trait(op, "layout_aware"):
            attrs["layout"] = Layout(c)
        new = build_op(op.kind, ins, attrs, name=op.name,
                       out_names=[unique_name(f"{op.output.name}_nchw{c}c", taken)])
        new.loc = op.loc
        ops.append(new)
        twin[op.output] = new.output
    graph.outputs = [nchw(v) for v in graph.outputs]
    graph.ops = ops
    graph.remove_unused_params()
    return len(nchw_copy) + sum(v.producer is not None and v.producer.kind == "LayoutTransform"
                                for v in converted.values())


def flattened_into_dense(graph: Graph, op: Op, users) -> bool:
    """`op` flattens [N, C, H, W] to [N, C*H*W] for Gemm/MatMul ops with constant weights
    only: flattening the blocked value instead just permutes the weights' K axis."""
    if op.kind == "Flatten":
        if op.attrs["axis"] != 1:
            return False
    elif op.kind != "Reshape" or len(op.output.type.shape) != 2:
        return False
    readers = users.get(op.output, [])
    return bool(readers) and op.output not in graph.outputs and all(
        ((d.kind == "Gemm" and not d.attrs["transA"])
         or (d.kind == "MatMul" and d.inputs[1].type.rank == 2))
        and d.inputs[0] is op.output and op.output not in d.inputs[1:]
        and const(d.inputs[1]) is not None for d in readers)


def blocked_flat_order(shape: tuple[int, ...]) -> np.ndarray:
    """For each position of a flattened blocked [N, C/c, H, W, c] row, the position of the
    same element in the flattened NCHW row."""
    _, cb, h, w, c = shape
    blk, y, x, i = np.meshgrid(np.arange(cb), np.arange(h), np.arange(w), np.arange(c),
                               indexing="ij")
    return (((blk * c + i) * h + y) * w + x).reshape(-1)


def _param(graph: Graph, name: str, data: np.ndarray) -> Value:
    v = Value(name, TensorType.of(data), data=np.ascontiguousarray(data))
    graph.params.append(v)
    return v


def _block_const(a: np.ndarray, c: int) -> np.ndarray:
    """A constant broadcast against [N, C, H, W] as its blocked twin against [N, C/c, H, W, c]."""
    from edgecc.ops.layout import block_nchw
    a4 = a.reshape((1,) * (4 - a.ndim) + a.shape)
    return a4.reshape(a4.shape + (1,)) if a4.shape[1] == 1 else block_nchw(a4, c)
