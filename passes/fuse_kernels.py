"""fuse-kernels: group ops that one loop nest can compute into `Fused` ops (one kernel each).

Three kinds of group, formed in this order over the whole graph:
  1. anchor + epilogue: Conv/ConvTranspose/Gemm/MatMul followed by elementwise ops computed
     on its result's index space (bias, BN leftovers, activations, residual Add + activation);
  2. reduction + prologue: GlobalAverage/MaxPool, Reduce*, Softmax/LogSoftmax with the
     elementwise ops that produce their input, when nothing else reads those values (and a
     Slice they read);
  3. elementwise chains: elementwise ops with the same result shape (operands may broadcast).
Anchor and chain groups also take in the index-remapping producers of their operands (Resize,
Transpose, Concat, Slice, ...; an upsample feeding a residual Add) when only the group reads
them: the kernel reads through the remapping instead of materializing it. A Conv likewise
takes the LayoutTransform that converts its input (the kernel's first op then).
A value read outside its group, or a graph output, stays a result of the Fused op, so no
value is lost; an op whose operand depends on the group through an outside op never joins
(that would make a cycle). Single ops are left as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgecc.ir import Graph, Op, Value
from edgecc.ops import check_op, has_trait
from edgecc.pass_registry import register_pass


def anchors(op: Op) -> bool:
    return has_trait(op, "contraction")


def reductions(op: Op) -> bool:
    return has_trait(op, "reduction")


def elementwise(op: Op) -> bool:
    return has_trait(op, "elementwise")


def injective(op: Op) -> bool:
    """Each result element is a function of a few operand elements at remapped indices."""
    return has_trait(op, "injective")


def a_slice(op: Op) -> bool:
    return op.kind == "Slice"

_SHORT = {"Conv": "conv", "ConvTranspose": "deconv", "Gemm": "gemm", "MatMul": "matmul",
          "GlobalAveragePool": "gap", "GlobalMaxPool": "gmp", "HardSwish": "hswish",
          "HardSigmoid": "hsigmoid", "LeakyRelu": "lrelu", "BatchNormalization": "bn"}


def kernel_label(ops: list[Op]) -> str:
    return "_".join(_SHORT.get(op.kind, op.kind.lower()) for op in ops)


def grow_forward(graph: Graph, seed: Op, max_ops: int) -> list[Op]:
    """The seed plus the elementwise ops after it that compute on the seed result's index
    space from values of the group (and outside values that do not depend on the group)."""
    shape = seed.output.type.shape
    index = {op: i for i, op in enumerate(graph.ops)}
    users = graph.users()
    group, inside, tainted = [seed], set(seed.outputs), set()

    def last_reader() -> int:
        return max((index[u] for v in inside for u in users.get(v, [])), default=-1)

    i, end = index[seed] + 1, last_reader()
    while i <= end and i < len(graph.ops) and len(group) < max_ops:
        op = graph.ops[i]
        reads = [v for v in op.inputs if v is not None]
        if any(v in inside or v in tainted for v in reads):
            if (elementwise(op) and len(op.outputs) == 1
                    and op.output.type.shape == shape
                    and not any(v in tainted for v in reads)):
                group.append(op)
                inside.update(op.outputs)
                end = max(end, last_reader())
            else:
                tainted.update(op.outputs)
        i += 1
    return group


def downstream(group: list[Op], users: dict) -> set[Op]:
    """The ops that read, directly or not, a result of `group`."""
    seen, stack = set(), list(group)
    while stack:
        for v in stack.pop().outputs:
            for u in users.get(v, []):
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
    return seen


def pull_producers(graph: Graph, group: list[Op], max_ops: int,
                   pullable: Callable[[Op], bool] = injective) -> list[Op]:
    """`group` plus the injective ops (`pullable`) producing its operands that only the group
    reads and that do not depend on the group (so no cycle can form). An anchor takes
    them for its epilogue only, and stays first: the backend picks a kernel's schedule by its
    first non-elementwise op."""
    index = {op: i for i, op in enumerate(graph.ops)}
    users = graph.users()
    seed = group[0]
    anchored = anchors(seed)
    members = set(group)
    after = downstream(group, users)
    pending = [op for op in group if not (anchored and op is seed)]
    while pending and len(members) < max_ops:
        op = pending.pop()
        for v in op.inputs:
            p = None if v is None else v.producer
            if (p is None or p in members or not pullable(p) or len(p.outputs) != 1
                    or v in graph.outputs or any(u not in members for u in users.get(v, []))
                    or any(x is not None and x.producer in after for x in p.inputs)
                    or (anchored and v in seed.inputs)):
                # (the anchor reads its own inputs from memory: a value both it and its
                # epilogue read stays a kernel of its own, e.g. Add(Conv(c), c))
                continue
            members.add(p)
            pending.append(p)
    if anchored:
        prologue = layout_prologue(graph, seed, users)
        return prologue + [seed] + sorted(members - {seed} - set(prologue), key=index.get)
    return sorted(members, key=index.get)


def layout_prologue(graph: Graph, seed: Op, users: dict) -> list[Op]:
    """The LayoutTransforms that convert a Conv's input (into its blocked layout, or out of a
    blocked one for an NCHW conv) when nothing else reads them: the kernel converts while it
    copies the input rows a task reads (its padded rows), so no separate conversion kernel."""
    if seed.kind != "Conv":
        return []
    chain, reader = [], seed
    while len(chain) < 2:
        x = reader.inputs[0]
        t = x.producer
        if (t is None or t.kind != "LayoutTransform" or x in graph.outputs
                or any(u is not reader for u in users.get(x, []))):
            break
        chain.insert(0, t)
        reader = t
    return chain


def grow_backward(graph: Graph, sink: Op, max_ops: int) -> list[Op]:
    """The sink plus the elementwise ops producing its input (on its input's index space)
    whose results nobody outside the group reads."""
    shape = sink.inputs[0].type.shape
    users = graph.users()
    group, frontier = {sink}, [sink.inputs[0]]
    while frontier and len(group) < max_ops:
        v = frontier.pop()
        p = v.producer
        if (p is None or p in group or not elementwise(p) or len(p.outputs) != 1
                or p.output.type.shape != shape or v in graph.outputs
                or any(u not in group for u in users.get(v, []))):
            continue
        group.add(p)
        frontier.extend(x for x in p.inputs if x is not None and x.data is None)
    return [op for op in graph.ops if op in group]


def live_results(graph: Graph, group: list[Op]) -> bool:
    """Whether anything outside `group` (or a graph output) reads one of its results: a dead
    group is left to dce, a kernel must produce something."""
    members = set(group)
    inside = {v for op in group for v in op.outputs}
    return any(v in graph.outputs for v in inside) or any(
        v in inside for op in graph.ops if op not in members for v in op.inputs)


def make_fused(graph: Graph, group: list[Op]) -> Op:
    """A Fused op computing `group` (in op order); its results are the group's values read
    outside it (or graph outputs), in the outer graph's Value objects."""
    members = set(group)
    inside = {v for op in group for v in op.outputs}
    readers_outside = {v for op in graph.ops if op not in members
                       for v in op.inputs if v in inside}
    results = [v for op in group for v in op.outputs
               if v in readers_outside or v in graph.outputs]
    operands: list[Value] = []
    for op in group:
        for v in op.inputs:
            if v is not None and v not in inside and v not in operands:
                operands.append(v)
    mapping = {v: Value(v.name, v.type) for v in operands}
    body = Graph(kernel_label(group), inputs=[mapping[v] for v in operands])
    for op in group:
        outs = [Value(v.name, v.type) for v in op.outputs]
        mapping.update(zip(op.outputs, outs))
        body.ops.append(Op(op.kind, [None if v is None else mapping[v] for v in op.inputs],
                           outs, dict(op.attrs), op.name, op.loc))
    body.outputs = [mapping[v] for v in results]
    fused = Op("Fused", operands, results, {"body": body, "kernel": body.name},
               name=group[0].name, loc=group[0].loc)
    check_op(fused)
    return fused


def replace_group(graph: Graph, group: list[Op], fused: Op) -> None:
    members = set(group)
    pos = graph.ops.index(group[-1])
    graph.ops[pos] = fused
    graph.ops = [op for op in graph.ops if op not in members]
    graph.topo_sort()


@register_pass
@dataclass(frozen=True)
class FuseKernels:
    name = "fuse-kernels"
    tolerance = 0.0       # a Fused body runs exactly the ops it replaced
    max_ops: int = 16            # ops per kernel

    def run(self, graph, ctx) -> bool:
        changed = False
        # reductions read only a Slice through (convert-layout's padded channels, dropped
        # before a Softmax); other remappings would cost their reduction schedule more
        phases = [(anchors, grow_forward, injective), (reductions, grow_backward, a_slice),
                  (elementwise, grow_forward, injective)]
        for seeds, grow, pulled in phases:
            for op in list(graph.ops):
                if not seeds(op) or op not in graph.ops:
                    continue
                group = grow(graph, op, self.max_ops)
                group = pull_producers(graph, group, self.max_ops, pulled)
                if len(group) > 1 and live_results(graph, group):
                    replace_group(graph, group, make_fused(graph, group))
                    changed = True
        return changed
