"""Scratch memory of a compiled kernel, read from its lowered host TIR.

TVM turns a kernel's intermediate buffers larger than its stack limit into
TVMBackendAllocWorkspace calls. Those at function level are live for the whole kernel (`top`);
those inside a parallel loop are allocated by every task (`per_task`: the most any one parallel
loop needs per task). The bundle's runtime serves them from the kernel's arena region, one
slice per thread taking part in the launch, so a kernel needs `top + threads * per_task`
bytes (see `Workspace.bytes`). The sizes are read after TVM's own lowering pipeline, i.e. from
exactly the calls the object code makes (build.KernelSet runs it once per kernel).
"""
from __future__ import annotations

import re
from typing import NamedTuple

from edgecc.backends.memory.alloc import align
from edgecc.errors import ModelError

_ALLOC = re.compile(r"TVMBackendAllocWorkspace\(\s*[^,]+,\s*[^,]+,\s*(?:T\.uint64\()?(\w+)")
_PARALLEL = re.compile(r"^(\s*)for .* in T\.parallel\(")


class Workspace(NamedTuple):
    top: int          # bytes live during the whole kernel (64-byte aligned blocks)
    per_task: int     # bytes each parallel task allocates (0 without parallel scratch)

    def bytes(self, threads: int) -> int:
        return self.top + threads * self.per_task


NONE = Workspace(0, 0)


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
