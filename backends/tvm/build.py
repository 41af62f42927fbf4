"""Compile a graph's kernels with TVM for one target: the interface the bundle writer uses.

    kernels = KernelSet(graph, target, tuning=None)      # every kernel lowered once
    kernels.scratch(lean)                                # {op index: Workspace} for planning
    lib = kernels.compile(workdir, lean)                 # -> KernelLibrary (objects to link)

A KernelSet lowers each distinct kernel of the graph once: TE compute (lower.py), schedule
(schedule.py, or a tuning record), then TVM's TIR pipeline, whose result is what gets
compiled and what the kernel's scratch is read from (scratch.py). The memory planner asks
for scratch sizes; kernels it wants scratch-free (`lean`: at the arena's peak) are lowered
once more in that variant, only those. `compile` generates code from the lowered functions
(no lowering again).

`lib.calls` has ONE entry per op of `graph.ops`, in graph order (the host code walks it):

    KernelCall(index, op_name, op_kind, kind, func, symbol, args)
      kind    "kernel": call `symbol` with `args`;
              "view":   no code; the single output aliases the single input's bytes
                        (ops with the "view" trait). func/symbol None.
      func    the TVM function name, "<prefix>k<n>_<label>" (e.g. k3_conv), n numbering the
              distinct kernels in first-use order; a scratch-free variant is
              "<prefix>k<n>_<label>_lean". Identical kernels (same op kind, attributes, Fused
              body and argument types) share one function.
      symbol  the C symbol in the object: "__tvm_ffi_<func>".
      args    tuple[KernelArg(name, dtype, shape, role)]: the op's present operands in operand
              order (role "input", or "param" when the value is a weight living in the weights
              blob), then its results (role "output"). `name` is the IR value name.

`lib.objects` are the object files to link (ELF for the target; today one `kernels.o`), and
`lib.archive` the `.tar` TVM exported them in.

Calling convention (TVM-FFI packed, see tvm/ffi/c_api.h):
    int32_t __tvm_ffi_<func>(void *self, const TVMFFIAny *args, int32_t num_args,
                             TVMFFIAny *result);
  self = NULL, result may point to a dummy TVMFFIAny; each args[i] has
  type_index = kTVMFFIDLTensorPtr (7) and v_ptr = a DLTensor* with: data = the tensor's
  bytes (64-byte aligned: TVM assumes buffer alignment when vectorizing), device = {kDLCPU, 0},
  ndim/shape = KernelArg.shape (ndim 0 allowed), dtype = KernelArg.dtype (bool = {kDLBool 6, 8, 1}),
  strides = NULL (compact row-major), byte_offset = 0. Returns 0 on success, non-zero after
  calling TVMFFIErrorSetRaisedFromCStrParts (the bundle provides it).
  What the object needs from the bundle (`nm` of a squeezenet build): the undefined symbols
  TVMFFIErrorSetRaisedFromCStrParts and libm's expf (link -lm), and three weak *function
  pointer variables* (nm type V) the host must assign before the first call:
  __TVMBackendAllocWorkspace, __TVMBackendFreeWorkspace, __TVMBackendParallelLaunch
  (parallel loops call the latter; each task must run exactly once, any thread count).
  A weak `__tvm_ffi_main` alias is also emitted; ignore it.

Builds are deterministic: the same graph and target give byte-identical objects.
`run_kernels_in_tvm(graph, feeds, target)` runs the compiled kernels in graph order with TVM's
own runtime (host only) - for testing the lowering without the bundle.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecc.backends.tvm.lower import is_view, lower_kernel, unsupported
from edgecc.backends.tvm.scratch import NONE, Workspace, scan_workspace
from edgecc.dtypes import dtype_to_tvm
from edgecc.errors import ModelError, UnsupportedOpsError
from edgecc.ir import Graph, Op
from edgecc.target import Target


@dataclass(frozen=True)
class KernelArg:
    name: str                       # IR value name
    dtype: str                      # IR short dtype (f32, i64, bool, ...)
    shape: tuple[int, ...]
    role: str                       # "input" | "param" | "output"


@dataclass(frozen=True)
class KernelCall:
    index: int                      # position in graph.ops
    op_name: str
    op_kind: str
    kind: str                       # "kernel" | "view"
    func: str | None                # TVM function name
    symbol: str | None              # C symbol: __tvm_ffi_<func>
    args: tuple[KernelArg, ...]

    @property
    def inputs(self) -> tuple[KernelArg, ...]:
        return tuple(a for a in self.args if a.role != "output")

    @property
    def outputs(self) -> tuple[KernelArg, ...]:
        return tuple(a for a in self.args if a.role == "output")


@dataclass
class KernelLibrary:
    target: str                     # "x86_64" | "arm64"
    triple: str
    calls: list[KernelCall]         # one per graph op, graph order
    functions: list[str]            # distinct kernel functions, in first-use order
    objects: list[Path] = field(default_factory=list)
    archive: Path | None = None
    seconds: float = 0.0            # code generation time

    @property
    def num_kernels(self) -> int:
        """Kernel launches per inference (views excluded)."""
        return sum(1 for c in self.calls if c.kind == "kernel")


@dataclass
class Kernel:
    """One compiled function: its scheduled PrimFunc run through TVM's TIR pipeline."""
    func: str                       # function name
    op: Op                          # the first op it computes
    prim: object                    # the scheduled tvm PrimFunc
    host: object                    # tvm IRModule: it through TVM's TIR pipeline
    scratch: Workspace
    tuned: bool = False


class KernelSet:
    """The kernels of `graph` for `target`, each lowered and scheduled once (see the module
    doc). `tuning`: backends/tune TuningRecords of this target (a recorded schedule wins over
    the default; never for a scratch-free variant). `prefix` is prepended to every function
    name (two models linked into one program)."""

    def __init__(self, graph: Graph, target: Target, tuning=None, prefix: str = ""):
        problems = unsupported(graph.ops)
        if problems:
            raise UnsupportedOpsError(f"graph '{graph.name}'", problems)
        self.graph, self.target, self.tuning, self.prefix = graph, target, tuning, prefix
        self.seconds = 0.0                          # lowering time so far
        self._numbers: dict[str, int] = {}          # kernel key -> n (first use)
        self._keys: dict[int, str] = {}             # op index -> kernel key (kernels only)
        self._variants: dict[tuple[str, bool], Kernel] = {}
        for i, op in enumerate(graph.ops):
            if not is_view(op):
                key = kernel_key(op)
                self._keys[i] = key
                self._numbers.setdefault(key, len(self._numbers))
        for i in self._keys:                        # the default variants, now
            self.kernel(i)

    def kernel(self, index: int, lean: bool = False) -> Kernel:
        """The kernel of graph.ops[index] (lowered on first request)."""
        key = self._keys[index]
        if (key, lean) not in self._variants:
            t0 = time.perf_counter()
            op = self.graph.ops[index]
            name = f"{self.prefix}k{self._numbers[key]}_{_label(op)}" + ("_lean" if lean else "")
            self._variants[(key, lean)] = self._lower(op, name, lean)
            self.seconds += time.perf_counter() - t0
        return self._variants[(key, lean)]

    def scratch(self, lean: frozenset[int] = frozenset()) -> dict[int, Workspace]:
        """{op index: Workspace} of the kernels that allocate scratch (`lean` indices in their
        scratch-free variant)."""
        out = {}
        for i in self._keys:
            ws = self.kernel(i, i in lean).scratch
            if ws != NONE:
                out[i] = ws
        return out

    def calls(self, lean: frozenset[int] = frozenset()) -> list[KernelCall]:
        params = {id(p) for p in self.graph.params}
        calls = []
        for i, op in enumerate(self.graph.ops):
            args = tuple(KernelArg(v.name, v.type.dtype, v.type.shape,
                                   "param" if id(v) in params else "input")
                         for v in op.inputs if v is not None)
            args += tuple(KernelArg(v.name, v.type.dtype, v.type.shape, "output")
                          for v in op.outputs)
            if i not in self._keys:
                calls.append(KernelCall(i, op.name, op.kind, "view", None, None, args))
                continue
            func = self.kernel(i, i in lean).func
            calls.append(KernelCall(i, op.name, op.kind, "kernel", func, f"__tvm_ffi_{func}",
                                    args))
        return calls

    def functions(self, lean: frozenset[int] = frozenset()) -> list[Kernel]:
        """The distinct kernels the calls use, in first-use order."""
        seen: dict[str, Kernel] = {}
        for i in self._keys:
            k = self.kernel(i, i in lean)
            seen.setdefault(k.func, k)
        return list(seen.values())

    def runtime_module(self, lean: frozenset[int] = frozenset()):
        """The kernels as one TVM runtime module (code generated from the lowered functions)."""
        import tvm
        build = importlib.import_module("tvm.tirx.build")
        merged = tvm.IRModule({})
        for k in self.functions(lean):
            merged.update(k.host)
        target = self.target.tvm.with_host(self.target.tvm)
        try:
            return build.tir_to_runtime(merged, {}, target)
        except Exception as e:
            for k in self.functions(lean):          # name the kernel that does not compile
                try:
                    build.tir_to_runtime(k.host, {}, target)
                except Exception as e1:
                    raise ModelError(f"{_who(k.op)}: TVM failed to compile kernel {k.func} for "
                                     f"{self.target.describe()}: {type(e1).__name__}: "
                                     f"{_first_line(e1)}") from None
            raise ModelError(f"TVM failed to compile the kernels for "
                             f"{self.target.describe()}: {type(e).__name__}: "
                             f"{_first_line(e)}") from None

    def compile(self, workdir: str | os.PathLike,
                lean: frozenset[int] = frozenset()) -> KernelLibrary:
        """Generate code for the kernels (`lean` indices scratch-free) into objects under
        `workdir`."""
        start = time.perf_counter()
        executable = self.runtime_module(lean)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        archive = workdir / "kernels.tar"
        executable.export_library(str(archive))
        objects = _extract_objects(archive, workdir)
        return KernelLibrary(self.target.name, self.target.triple, self.calls(lean),
                             [k.func for k in self.functions(lean)], objects, archive,
                             time.perf_counter() - start)

    def _lower(self, op: Op, name: str, lean: bool) -> Kernel:
        try:
            # tuning hook (backends/tune): a recorded schedule wins, except scratch-free
            tuned = self.tuning.schedule(op) if self.tuning is not None and not lean else None
            prim = tuned.with_attr("global_symbol", name) if tuned is not None else \
                lower_kernel(op, name, self.target, lean)
            host = lower_to_host(prim, name, self.target)
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"{_who(op)}: lowering to TVM failed: {type(e).__name__}: "
                             f"{_first_line(e)}") from None
        return Kernel(name, op, prim, host, scan_workspace(host[name].script(), name),
                      tuned is not None)


def lower_to_host(prim, name: str, target: Target):
    """`prim` (a scheduled PrimFunc named `name`) through TVM's default TIR pipeline: the
    finalized host IRModule that code generation takes, as tvm.compile would make it for a
    module of many kernels."""
    import tvm
    build = importlib.import_module("tvm.tirx.build")
    tt = target.tvm.with_host(target.tvm)
    mod = tvm.tirx.transform.BindTarget(tt)(tvm.IRModule({name: prim}))
    pipeline, finalize_host, _ = tvm.tirx.get_tir_pipeline("default")
    host, _ = build.split_host_device_mods(pipeline(mod))
    host = finalize_host()(host)
    # a one-function module makes its function the entry point; in the combined module
    # (what compile() generates code for) no kernel is one
    funcs = {}
    for gv, f in host.functions.items():
        if f.attrs is not None and "tirx.is_entry_func" in f.attrs:
            f = f.without_attr("tirx.is_entry_func")
        funcs[gv.name_hint] = f
    return tvm.IRModule(funcs, attrs=host.attrs)


def scratch_of(prim, target: Target) -> Workspace:
    """The scratch a scheduled PrimFunc (global symbol or not) would allocate (tuning's arena
    guard asks this of a candidate schedule)."""
    host = lower_to_host(prim.with_attr("global_symbol", "main"), "main", target)
    return scan_workspace(host["main"].script(), "main")


def _extract_objects(archive: Path, workdir: Path) -> list[Path]:
    objects = []
    with tarfile.open(archive) as tf:
        members = sorted((m for m in tf.getmembers() if m.name.endswith(".o")),
                         key=lambda m: m.name)
        for i, m in enumerate(members):
            out = workdir / ("kernels.o" if len(members) == 1 else f"kernels_{i}.o")
            out.write_bytes(tf.extractfile(m).read())
            objects.append(out)
    return objects


def _who(op: Op) -> str:
    if op.kind == "Fused":
        inner = ", ".join(o.describe() for o in op.attrs["body"].ops)
        return f"{op.describe()} [{inner}]"
    return op.describe()


def _first_line(e: Exception) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    # TVM errors end with the meaningful line after a C++ backtrace
    return (lines[-1] if lines else "").strip()[:300]


def _label(op: Op) -> str:
    text = op.attrs.get("kernel") or "_".join(o.kind for o in op.attrs["body"].ops) \
        if op.kind == "Fused" else op.kind
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:40] or "kernel"


# ---- kernel identity (deduplication) ---------------------------------------------------------

def kernel_key(op: Op) -> str:
    """A digest equal for ops that compile to the same function: kind, attributes, operand
    and result types (and, for Fused, the body's structure)."""
    return hashlib.sha256(repr(_signature(op)).encode()).hexdigest()


def _type_sig(v):
    """dtype, shape and quantization parameters (an int8 kernel's constants come from them)."""
    if v is None:
        return None
    q = v.type.quant
    quant = None if q is None else (tuple(float.hex(float(s)) for s in q.scale),
                                    tuple(q.zero_point), q.axis)
    return (v.type.dtype, v.type.shape, quant)


def _attr_sig(x):
    if isinstance(x, np.ndarray):
        return ("array", str(x.dtype), x.shape, x.tolist())
    if isinstance(x, (list, tuple)):
        return tuple(_attr_sig(v) for v in x)
    if isinstance(x, Graph):
        return _body_sig(x)
    if isinstance(x, float):
        return float.hex(x)
    return x


def _signature(op: Op):
    attrs = tuple(sorted((k, _attr_sig(v)) for k, v in op.attrs.items() if k != "kernel"))
    return (op.kind, attrs, tuple(_type_sig(v) for v in op.inputs),
            tuple(_type_sig(v) for v in op.outputs))


def _body_sig(body: Graph):
    ref = {id(v): ("in", i) for i, v in enumerate(body.inputs)}
    ops = []
    for j, op in enumerate(body.ops):
        sig = _signature(op)
        ops.append((sig, tuple(None if v is None else ref.get(id(v), ("?", v.name))
                               for v in op.inputs)))
        for k, v in enumerate(op.outputs):
            ref[id(v)] = ("op", j, k)
    outs = tuple(ref.get(id(v), ("?", v.name)) for v in body.outputs)
    return ("body", tuple(ops), outs)


# ---- running in-process with TVM's runtime (tests, debugging) --------------------------------

class CompiledGraph:
    """`graph`'s kernels compiled once for a target that runs here, called in order from
    Python with TVM's runtime (calibration statistics, tests, debugging)."""

    def __init__(self, graph: Graph, target: Target, lean: frozenset[int] = frozenset()):
        if not target.runs_here():
            raise ModelError(f"compiled kernels run on this machine only; "
                             f"{target.describe()} does not run here")
        self.graph, self.lean = graph, lean
        self.kernels = KernelSet(graph, target)
        self.executable = self.kernels.runtime_module(lean)
        self.calls = list(self.kernels.calls(lean))
        self._device_params: dict[str, tuple] = {}
        self._funcs = None

    def run(self, feeds: dict[str, np.ndarray], keep_all: bool = False):
        """The outputs in order (and with keep_all a dict name -> array of every value).
        Values stay TVM tensors between kernels; results are copied out once."""
        on_device = self._execute(feeds)
        outputs = [on_device[v.name].numpy() for v in self.graph.outputs]
        if not keep_all:
            return outputs
        env = {name: t.numpy() for name, t in on_device.items()}
        env.update((p.name, p.data) for p in self.graph.params)
        return outputs, env

    def time_calls(self, feeds: dict[str, np.ndarray], runs: int = 5) -> list[float]:
        """Seconds each call takes (self.calls order; views 0): the median of `runs` runs
        after one warm-up run."""
        times: list[list[float]] = [[] for _ in self.calls]
        for _ in range(runs + 1):
            self._execute(feeds, times)
        return [float(np.median(t[1:])) if len(t) > 1 else 0.0 for t in times]

    def _execute(self, feeds: dict[str, np.ndarray], times: list[list[float]] | None = None):
        """Every value by name, on the device; with `times`, each call's seconds appended."""
        import tvm
        from edgecc.kernels.executor import check_feeds
        graph = self.graph
        dev = tvm.cpu(0)
        if self._funcs is None:          # function handles: looked up once
            self._funcs = [None if c.kind == "view" else self.executable[c.func]
                           for c in self.calls]
        on_device = {v.name: tvm.runtime.tensor(np.asarray(a, order="C"), dev)
                     for v, a in zip(graph.inputs, check_feeds(graph, feeds))}
        # weights stay on the device between runs while their array is the same object (a
        # pass that changes one, e.g. bias correction, assigns a new array)
        for p in graph.params:
            held = self._device_params.get(p.name)
            if held is None or held[0] is not p.data:
                held = (p.data, tvm.runtime.tensor(np.asarray(p.data, order="C"), dev))
                self._device_params[p.name] = held
            on_device[p.name] = held[1]
        for i, (call, fn) in enumerate(zip(self.calls, self._funcs)):
            args = [on_device[a.name] for a in call.inputs]
            if call.kind == "view":
                out = call.outputs[0]
                on_device[out.name] = args[0]._create_view(tuple(out.shape))
                continue
            outs = [tvm.runtime.empty(a.shape, dtype_to_tvm(a.dtype), dev)
                    for a in call.outputs]
            start = time.perf_counter()
            try:
                fn(*args, *outs)
            except Exception as e:
                raise ModelError(f"kernel {call.func} for node '{call.op_name}' "
                                 f"({call.op_kind}) failed: {_first_line(e)}") from None
            if times is not None:
                times[i].append(time.perf_counter() - start)
            for a, o in zip(call.outputs, outs):
                on_device[a.name] = o
        return on_device


def run_kernels_in_tvm(graph: Graph, feeds: dict[str, np.ndarray], target: Target,
                       keep_all: bool = False, lean: frozenset[int] = frozenset()):
    """Execute `graph` once by calling its compiled kernels in order (targets that run
    here). Returns the outputs in order (and with keep_all a dict name -> array of every
    value)."""
    return CompiledGraph(graph, target, lean).run(feeds, keep_all)
