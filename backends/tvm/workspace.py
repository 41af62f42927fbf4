"""Scratch memory of the compiled kernels, so the memory plan can reserve it in the arena.

    ws = kernel_workspace(graph, target)       # {op index: Workspace(top, per_task)}

TVM turns a kernel's intermediate buffers larger than its stack limit into
TVMBackendAllocWorkspace calls. Those at function level are live for the whole kernel (`top`);
those inside a parallel loop are allocated by every task (`per_task`: the most any one parallel
loop needs per task). The bundle's runtime serves them from the kernel's arena region, one
slice per thread taking part in the launch, so a kernel needs `top + threads * per_task`
bytes (see `Workspace.bytes`).

The sizes are read from the host TIR after TVM's own lowering pipeline (the one `tvm.compile`
runs), i.e. from exactly the calls the object code makes.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from edgecc.errors import ModelError
from edgecc.ir import Graph

from edgecc.backends.memory.alloc import align
from edgecc.target import Target, make_target
from edgecc.backends.tvm.build import plan_kernels

_ALLOC = re.compile(r"TVMBackendAllocWorkspace\(\s*[^,]+,\s*[^,]+,\s*(?:T\.uint64\()?(\w+)")
_PARALLEL = re.compile(r"^(\s*)for .* in T\.parallel\(")


class Workspace(NamedTuple):
    top: int          # bytes live during the whole kernel (64-byte aligned blocks)
    per_task: int     # bytes each parallel task allocates (0 without parallel scratch)

    def bytes(self, threads: int) -> int:
        return self.top + threads * self.per_task


def kernel_workspace(graph: Graph, target: Target | str, prefix: str = "",
                     tuning=None, scratch_free: frozenset[int] = frozenset()
                     ) -> dict[int, Workspace]:
    """{index into graph.ops: Workspace} for every kernel that allocates scratch.

    `tuning` must be what build_kernels gets: a tuned schedule has its own scratch."""
    import tvm
    target = make_target(target) if isinstance(target, str) else target
    with target.tvm:            # the same default schedules build_kernels makes
        calls, funcs = plan_kernels(graph, prefix, tuning, scratch_free)
    if not funcs:
        return {}
    host = _lowered_host_module(tvm.IRModule({n: f for n, (f, _) in funcs.items()}), target.tvm)
    per_func = {}
    for gv, func in host.functions.items():
        ws = scan_workspace(func.script(), gv.name_hint)
        if ws.top or ws.per_task:
            per_func[gv.name_hint] = ws
    return {c.index: per_func[c.func] for c in calls if c.kind == "kernel" and c.func in per_func}


def _lowered_host_module(mod, target):
    """The host IRModule as tvm.tirx.build sees it just before code generation."""
    import importlib
    import tvm
    build = importlib.import_module("tvm.tirx.build")
    target = target.with_host(target)
    mod = tvm.tirx.transform.BindTarget(target)(mod)
    pipeline, finalize_host, _ = tvm.tirx.get_tir_pipeline("default")
    host, _ = build.split_host_device_mods(pipeline(mod))
    return finalize_host()(host)


def scan_workspace(script: str, func: str = "") -> Workspace:
    """Workspace of one lowered PrimFunc from its TVMScript text (indentation = nesting)."""
    top = 0
    loops: list[list[int]] = []       # open parallel loops: [indent, bytes]
    per_task = 0
    for line in script.splitlines():
        indent = len(line) - len(line.lstrip())
        while loops and indent <= loops[-1][0] and line.strip():
            per_task = _close(loops, per_task)
        m = _PARALLEL.match(line)
        if m:
            loops.append([len(m.group(1)), 0])
            continue
        for size in _ALLOC.findall(line):
            if not size.isdigit():
                raise ModelError(f"kernel {func}: workspace of non-constant size {size}; "
                                 f"the bundle needs static shapes (pass --input-shape)")
            if loops:
                loops[-1][1] += align(int(size))
            else:
                top += align(int(size))
    while loops:
        per_task = _close(loops, per_task)
    return Workspace(top, per_task)


def _close(loops: list[list[int]], per_task: int) -> int:
    """Pop the innermost parallel loop: a nested one runs inside its parent's task."""
    _, nbytes = loops.pop()
    if loops:
        loops[-1][1] += nbytes
        return per_task
    return max(per_task, nbytes)
