"""What the generated host code does, as data: static tensors, steps, weights, I/O.

    plan = plan_bundle(graph, kernels, threads=None)    # memory plan incl. kernel scratch
    program = make_program(graph, kernels.compile(workdir, plan.scratch_free), plan, "model")

The host code (model.c, rendered by csrc.py) binds one static DLTensor per IR value to
its storage (the caller's arena at a planned offset, an input or output pointer, or the linked
weights) and runs `steps` in the plan's order: kernel launches, and byte copies where a view
could not alias (a view between two caller buffers) or a graph output is stored elsewhere
(an input, a weight, or another output).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecc.errors import ModelError
from edgecc.ir import Graph
from edgecc.ops.layout import layout_of

from edgecc.backends.memory.alloc import ALIGN, align
from edgecc.backends.memory.plan import GraphPlan, plan_graph
from edgecc.backends.tvm.build import KernelSet
from edgecc.backends.tvm.scratch import Workspace

# Kernel scratch inside parallel loops is reserved for this many threads (or --threads when
# larger); at run time a launch uses at most as many threads as the reserved scratch serves.
# 4: the big cores of most edge SoCs; each reserved thread costs RAM (ppocr_cls's arena is
# 1.8x its activations' at 8), so more cores need --threads at build time to be used there.
WORKSPACE_THREADS = 4


@dataclass
class BundlePlan:
    memory: GraphPlan
    workspace: dict[int, Workspace]       # graph.ops index -> scratch of that kernel
    workspace_threads: int
    scratch_free: frozenset[int] = frozenset()   # kernels compiled scratch-free (lean)


def plan_bundle(graph: Graph, kernels: KernelSet, threads: int | None = None,
                peak_scratch_free: bool = False) -> BundlePlan:
    """Memory plan of the bundle: activations, views, in-place and kernel scratch (the
    kernels' scratch as lowered; `kernels` must be the graph's KernelSet).

    `peak_scratch_free`: kernels whose scratch would lift the arena above what the
    activations alone need are scheduled without scratch (their padded input rows are read
    in place, bounds-checked; blocked convs copy one tile's rows): the arena is then the
    activations' peak (plus those tiles). Compile with the plan's `scratch_free`."""
    ws_threads = max(threads or 0, WORKSPACE_THREADS)
    ws = kernels.scratch()
    memory = plan_memory(graph, ws, ws_threads)
    lean = frozenset()
    if peak_scratch_free and ws:
        activations = plan_memory(graph, {}, ws_threads)
        if memory.arena_bytes > activations.arena_bytes:
            lean = frozenset(scratch_at_peak(graph, activations, ws, ws_threads))
            ws_lean = kernels.scratch(lean)
            lean_memory = plan_memory(graph, ws_lean, ws_threads)
            if lean_memory.arena_bytes < memory.arena_bytes:
                memory, ws = lean_memory, ws_lean
            else:
                lean = frozenset()
    return BundlePlan(memory, ws, ws_threads, lean)


def plan_memory(graph: Graph, ws: dict[int, Workspace], threads: int) -> GraphPlan:
    """The arena plan of `graph` with kernel scratch `ws` ({op index: Workspace}) reserved
    for `threads` threads."""
    sizes = {i: w.bytes(threads) for i, w in ws.items()}
    memory = plan_graph(graph, workspace=sizes)
    if misaligned_values(graph, memory):
        # a Concat operand placed as a slice at an offset TVM's aligned vector loads/stores
        # cannot take: plan without concat elimination instead
        memory = plan_graph(graph, workspace=sizes, concat=False)
    return memory


def scratch_at_peak(graph: Graph, activations: GraphPlan, ws: dict[int, Workspace],
                    threads: int) -> list[int]:
    """Kernels (graph.ops indices) whose scratch on top of the activations live while they
    run exceeds the activations-only arena, of those that run about as fast without it."""
    index = {id(op): i for i, op in enumerate(graph.ops)}
    lean = []
    for t, op in enumerate(activations.order):
        i = index.get(id(op))
        if i in ws and activations.live_bytes[t] + ws[i].bytes(threads) > \
                activations.arena_bytes and fast_without_scratch(op):
            lean.append(i)
    return sorted(lean)


def fast_without_scratch(op) -> bool:
    """Whether the scratch-free schedule of `op`'s kernel is about as fast as the default:
    not for NCHW convs, whose vectorized rows then load through bounds checks (measured
    15-20x slower on ppocr_cls's depthwise convs). Blocked group-1 convs keep one register
    tile's padded input instead of a task's rows (0.99-1.02x on resnet50's 3x3 convs)."""
    ops = op.attrs["body"].ops if op.kind == "Fused" else [op]
    return not any(o.kind in ("Conv", "ConvTranspose") and not layout_of(o).is_blocked
                   for o in ops)


def misaligned_values(graph: Graph, gp: GraphPlan) -> list[str]:
    """Values whose storage does not start on a 64-byte boundary (kernels assume it does)."""
    return [v.name for v in graph.values() if gp.location(v.name).offset % ALIGN]


@dataclass(frozen=True)
class IOSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class TensorSlot:
    value: str
    dtype: str
    shape: tuple[int, ...]
    where: str          # "arena" | "input" | "output" | "weights"
    index: int          # input/output position
    offset: int         # bytes into the arena / weights


@dataclass(frozen=True)
class Step:
    what: str                        # "kernel 3 'conv1' (Conv)": names failures
    symbol: str | None = None        # kernel to call; None: copy src -> dst
    args: tuple[int, ...] = ()       # tensor slots of the kernel's arguments
    src: int = -1
    dst: int = -1
    nbytes: int = 0
    ws_offset: int = 0
    ws_bytes: int = 0
    ws_task: int = 0                 # scratch bytes per parallel task


@dataclass
class Program:
    name: str
    target: str
    triple: str
    default_threads: int             # --threads, 0 = online CPUs
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    tensors: list[TensorSlot]
    steps: list[Step]
    weights: list[tuple[str, int, int]]    # (param, offset, bytes) in the blob
    weights_bytes: int
    arena_bytes: int
    workspace_threads: int
    symbols: list[str] = field(default_factory=list)   # kernel functions, sorted

    @property
    def num_kernels(self) -> int:
        return sum(1 for s in self.steps if s.symbol)


def make_program(graph: Graph, lib, plan: BundlePlan, name: str = "model",
                threads: int | None = None) -> Program:
    gp = plan.memory
    bad = misaligned_values(graph, gp)
    if bad:
        raise ValueError(f"memory plan places {bad[:5]} off the {ALIGN}-byte alignment the "
                         f"kernels assume; plan with plan_bundle()")
    if len(lib.calls) != len(graph.ops):
        raise ModelError(f"graph '{graph.name}': kernel library has {len(lib.calls)} calls for "
                         f"{len(graph.ops)} ops (built for another graph?)")
    index_of = {id(op): i for i, op in enumerate(graph.ops)}
    in_index = {v.name: i for i, v in enumerate(graph.inputs)}
    out_index: dict[str, int] = {}
    for j, v in enumerate(graph.outputs):
        out_index.setdefault(v.name, j)

    weights, w_offset = _layout_weights(graph, gp)
    tensors: list[TensorSlot] = []
    slot_of: dict[object, int] = {}

    def slot(value: str, dtype: str, shape) -> int:
        if value in slot_of:
            return slot_of[value]
        loc = gp.location(value)
        index, base = {"arena": (0, 0), "input": (in_index.get(loc.root), 0),
                       "output": (out_index.get(loc.root), 0),
                       "param": (0, w_offset.get(loc.root))}[loc.kind]
        if index is None or base is None:
            raise ModelError(f"graph '{graph.name}': %{value} is stored in {loc.kind} "
                             f"'{loc.root}', which the graph does not have")
        where = "weights" if loc.kind == "param" else loc.kind
        slot_of[value] = len(tensors)
        tensors.append(TensorSlot(value, dtype, tuple(shape), where, index, base + loc.offset))
        return slot_of[value]

    def value_slot(v) -> int:
        return slot(v.name, v.type.dtype, v.type.shape)

    ws_size = {b.name: b.size for b in gp.buffers}
    steps: list[Step] = []
    for t, op in enumerate(gp.order):
        i = index_of[id(op)]
        call = lib.calls[i]
        if call.op_kind != op.kind:
            raise ModelError(f"{op.describe()}: kernel library call {i} is for a {call.op_kind} "
                             f"(built for another graph?)")
        what = f"kernel {i} '{op.name}' ({op.kind})"
        if gp.is_noop(op):         # a view aliasing its operand, an eliminated Concat
            continue
        if call.kind == "view":    # a view between two caller buffers: copy the bytes
            steps.append(Step(what, src=value_slot(op.inputs[0]), dst=value_slot(op.output),
                              nbytes=op.output.type.nbytes))
            continue
        args = tuple(slot(a.name, a.dtype, a.shape) for a in call.args)
        ws_name = gp.workspace.get(t)       # the memory plan says how much scratch it has
        ws = plan.workspace.get(i)
        steps.append(Step(what, call.symbol, args,
                          ws_offset=gp.offsets[ws_name] if ws_name else 0,
                          ws_bytes=ws_size[ws_name] if ws_name else 0,
                          ws_task=ws.per_task if ws else 0))

    for j, v in enumerate(graph.outputs):         # outputs not written in place
        src = value_slot(v)
        s = tensors[src]
        if not (s.where == "output" and s.index == j and s.offset == 0):
            dst = len(tensors)
            tensors.append(TensorSlot(f"{v.name}#output{j}", v.type.dtype, v.type.shape,
                                      "output", j, 0))
            steps.append(Step(f"output {j} '{v.name}'", src=src, dst=dst, nbytes=v.type.nbytes))

    return Program(name, lib.target, lib.triple, threads or 0, _io(graph.inputs),
                  _io(graph.outputs),
                  tensors, steps, weights, sum(align(b) for _, _, b in weights), gp.arena_bytes,
                  plan.workspace_threads, sorted({s.symbol for s in steps if s.symbol}))


def _io(values) -> list[IOSpec]:
    return [IOSpec(v.name, v.type.dtype, v.type.shape, v.type.nbytes) for v in values]


def _layout_weights(graph: Graph, gp: GraphPlan):
    """Params any kernel or output reads, in graph order, 64-byte aligned in one blob."""
    used = set()
    for op in graph.ops:
        for v in list(op.inputs) + list(op.outputs):
            if v is not None:
                loc = gp.location(v.name)
                if loc.kind == "param":
                    used.add(loc.root)
    for v in graph.outputs:
        if v.is_param:
            used.add(v.name)
    weights, offsets, off = [], {}, 0
    for p in graph.params:
        if p.name in used:
            offsets[p.name] = off
            weights.append((p.name, off, p.type.nbytes))
            off += align(p.type.nbytes)
    return weights, offsets


def weights_blob(graph: Graph, layout: Program):
    """Yields the weights blob in chunks (each param's bytes, then zero padding)."""
    params = {p.name: p for p in graph.params}
    for name, _, nbytes in layout.weights:
        data = np.ascontiguousarray(params[name].data, dtype=params[name].type.np_dtype)
        yield data.reshape(-1).view(np.uint8)
        yield bytes(align(nbytes) - nbytes)
