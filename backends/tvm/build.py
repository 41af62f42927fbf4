"""Compile a graph's kernels with TVM for one target: the interface the bundle writer uses.

    lib = build_kernels(graph, make_target("arm64"), workdir)   # -> KernelLibrary

`lib.calls` has ONE entry per op of `graph.ops`, in graph order (the host code walks it):

    KernelCall(index, op_name, op_kind, kind, func, symbol, args)
      kind    "kernel": call `symbol` with `args`;
              "view":   no code; the single output aliases the single input's bytes
                        (Reshape/Flatten/Squeeze/Unsqueeze/Identity/Dropout). func/symbol None.
      func    the TVM function name, "<prefix>k<n>_<label>" (e.g. k3_conv); identical kernels
              (same op kind, attributes, Fused body and argument types) share one function.
      symbol  the C symbol in the object: "__tvm_ffi_<func>".
      args    tuple[KernelArg(name, dtype, shape, role)]: the op's present operands in operand
              order (role "input", or "param" when the value is a weight living in the weights
              blob), then its results (role "output"). `name` is the IR value name.

`lib.objects` are the object files to link (ELF for the target; today one `kernels.o`), and
`lib.archive` the `.tar` TVM exported them in. `lib.target` is the edgecc target name
("x86_64"/"arm64"), `lib.triple` the LLVM triple.

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
`run_kernels_in_tvm(graph, feeds, target="x86_64")` runs the compiled kernels in graph order with
TVM's own runtime (host only) - for testing the lowering without the bundle.
`plan_kernels(graph, prefix)` -> (calls, {func: (scheduled PrimFunc, op)}) is the lowering
without compiling (used to size kernel workspaces).
"""
from __future__ import annotations

import hashlib
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecc.dtypes import dtype_to_tvm
from edgecc.errors import ModelError, UnsupportedOpsError
from edgecc.ir import Graph, Op

from edgecc.target import Target, make_target
from edgecc.backends.tvm.lower import is_view, lower_kernel, unsupported
from edgecc.backends.tvm.schedule import scratch_free as scratch_free_schedules


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
    seconds: float = 0.0            # lowering + compile time

    @property
    def num_kernels(self) -> int:
        """Kernel launches per inference (views excluded)."""
        return sum(1 for c in self.calls if c.kind == "kernel")


def build_kernels(graph: Graph, target: Target | str, workdir: str | os.PathLike,
                  prefix: str = "", tuning=None,
                  scratch_free: frozenset[int] = frozenset()) -> KernelLibrary:
    """Lower and compile every kernel of `graph` for `target` into objects under `workdir`.

    `prefix` is prepended to every function name (e.g. the bundle's --name) so that two
    models can be linked into one program. `tuning` (backends/tune.TuningRecords of this
    target): kernels with a tuning record use the tuned schedule instead of the default.
    `scratch_free`: indices into graph.ops of kernels scheduled without scratch copies
    (plan_bundle picks them: their scratch would raise the arena's peak).
    """
    import time
    start = time.perf_counter()
    target = make_target(target) if isinstance(target, str) else target
    with target.tvm:            # default schedules size their tiles for this target
        calls, funcs = plan_kernels(graph, prefix, tuning, scratch_free)
    executable = _compile(funcs, target)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / "kernels.tar"
    executable.export_library(str(archive))
    objects = _extract_objects(archive, workdir)
    return KernelLibrary(target.name, target.triple, calls, list(funcs), objects, archive,
                         time.perf_counter() - start)


def plan_kernels(graph: Graph, prefix: str = "", tuning=None,
                 scratch_free: frozenset[int] = frozenset()) -> tuple[list[KernelCall], dict]:
    """The calls of `graph` and {func name: (PrimFunc, representative op)} (deduplicated);
    ops at `scratch_free` indices get scratch-free default schedules (never tuned ones)."""
    problems = unsupported(graph.ops)
    if problems:
        raise UnsupportedOpsError(f"graph '{graph.name}'", problems)
    params = {id(p) for p in graph.params}
    by_key: dict[str, str] = {}
    funcs: dict[str, tuple] = {}
    calls = []
    for i, op in enumerate(graph.ops):
        args = tuple(KernelArg(v.name, v.type.dtype, v.type.shape,
                               "param" if id(v) in params else "input")
                     for v in op.inputs if v is not None)
        args += tuple(KernelArg(v.name, v.type.dtype, v.type.shape, "output")
                      for v in op.outputs)
        if is_view(op):
            calls.append(KernelCall(i, op.name, op.kind, "view", None, None, args))
            continue
        lean = i in scratch_free
        key = kernel_key(op) + ("/scratch-free" if lean else "")
        name = by_key.get(key)
        if name is None:
            name = f"{prefix}k{len(funcs)}_{_label(op)}"
            by_key[key] = name
            with scratch_free_schedules(lean):
                funcs[name] = (_lower(op, name, None if lean else tuning), op)
        calls.append(KernelCall(i, op.name, op.kind, "kernel", name, f"__tvm_ffi_{name}", args))
    return calls, funcs


def _lower(op: Op, name: str, tuning=None):
    try:
        # tuning hook (backends/tune.py): a recorded MetaSchedule schedule wins
        tuned = tuning.schedule(op) if tuning is not None else None
        if tuned is not None:
            return tuned.with_attr("global_symbol", name)
        return lower_kernel(op, name)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"{_who(op)}: lowering to TVM failed: {type(e).__name__}: "
                         f"{_first_line(e)}") from None


def _compile(funcs: dict, target: Target):
    import tvm
    mod = tvm.IRModule({name: f for name, (f, _) in funcs.items()})
    try:
        return tvm.compile(mod, target=target.tvm)
    except Exception as e:
        # find the kernel that does not compile on its own, to name it
        for name, (f, op) in funcs.items():
            try:
                tvm.compile(tvm.IRModule({name: f}), target=target.tvm)
            except Exception as e1:
                raise ModelError(f"{_who(op)}: TVM failed to compile kernel {name} for "
                                 f"{target.describe()}: {type(e1).__name__}: "
                                 f"{_first_line(e1)}") from None
        raise ModelError(f"TVM failed to compile the kernels for {target.describe()}: "
                         f"{type(e).__name__}: {_first_line(e)}") from None


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
    return None if v is None else (v.type.dtype, v.type.shape)


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

def run_kernels_in_tvm(graph: Graph, feeds: dict[str, np.ndarray], target: str = "x86_64",
                       keep_all: bool = False, scratch_free: frozenset[int] = frozenset()):
    """Execute `graph` by calling its compiled kernels in order (host targets only).

    Returns the outputs in order (and with keep_all a dict name -> array of every value)."""
    import tvm
    from edgecc.kernels.executor import check_feeds
    t = make_target(target) if isinstance(target, str) else target
    if not t.is_host:
        raise ModelError(f"run_kernels_in_tvm runs host code only; {t.name} is not this host")
    with t.tvm:
        calls, funcs = plan_kernels(graph, scratch_free=scratch_free)
    executable = _compile(funcs, t)
    env: dict[str, np.ndarray] = {v.name: a for v, a in zip(graph.inputs,
                                                             check_feeds(graph, feeds))}
    for p in graph.params:
        env[p.name] = np.asarray(p.data, order="C")
    for call in calls:
        ins = [env[a.name] for a in call.inputs]
        if call.kind == "view":
            out = call.outputs[0]
            env[out.name] = ins[0].reshape(out.shape)
            continue
        dev = tvm.cpu(0)
        args = [tvm.runtime.tensor(np.asarray(a, order="C"), dev) for a in ins]
        outs = [tvm.runtime.empty(a.shape, _np_dtype(a.dtype), dev) for a in call.outputs]
        try:
            executable[call.func](*args, *outs)
        except Exception as e:
            raise ModelError(f"kernel {call.func} for node '{call.op_name}' ({call.op_kind}) "
                             f"failed: {_first_line(e)}") from None
        for a, o in zip(call.outputs, outs):
            env[a.name] = o.numpy()
    outputs = [env[v.name] for v in graph.outputs]
    return (outputs, env) if keep_all else outputs


def _np_dtype(short: str) -> str:
    return dtype_to_tvm(short)
