"""The reference executor: walks a graph in op order, running each op's kernel.

Intermediates are freed as soon as their last reader has run, so whole networks
(ResNet-50, VGG-19) fit in memory. Failures inside a kernel are re-raised as ModelError
"while executing node '<name>' (<Kind>): <error>".
"""
from __future__ import annotations

import numpy as np

from edgecc.errors import EdgeccError, ModelError, NumericError, ResourceError, UsageError
from edgecc.ir import Graph, Op, Value

from .registry import KERNELS

_PLAIN_ERRORS = (UsageError, ModelError, NumericError, ResourceError)


def run_op(op: Op, inputs: list) -> list[np.ndarray]:
    """Run one op on numpy arrays (None for an omitted optional operand)."""
    fn = KERNELS.get(op.kind)
    if fn is None:
        raise ModelError(f"{op.describe()}: the reference executor has no kernel for "
                         f"'{op.kind}'")
    if len(inputs) != len(op.inputs):
        raise ModelError(f"{op.describe()}: {len(inputs)} operand array(s) for "
                         f"{len(op.inputs)} operand(s)")
    try:
        results = fn(op, list(inputs))
    except EdgeccError as e:  # keep the kind (exit code); subclasses become ModelError
        cls = type(e) if type(e) in _PLAIN_ERRORS else ModelError
        raise cls(f"while executing {op.describe()}: {e.message}") from e
    except Exception as e:  # a kernel bug or bad data: say which node
        raise ModelError(f"while executing {op.describe()}: {type(e).__name__}: {e}") from e
    if op.outputs and len(results) != len(op.outputs):
        raise ModelError(f"while executing {op.describe()}: kernel returned "
                         f"{len(results)} result(s), the op declares {len(op.outputs)}")
    results = [np.asarray(r) for r in results]
    for v, r in zip(op.outputs, results):
        want = v.type
        if r.dtype != want.np_dtype or tuple(r.shape) != want.shape:
            raise ModelError(f"while executing {op.describe()}: result %{v.name} is "
                             f"{r.dtype}{list(r.shape)}, declared {want}")
    return results


def check_feeds(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The graph inputs' arrays in order; UsageError naming the input on any mismatch."""
    names = [v.name for v in graph.inputs]
    unknown = sorted(set(feeds) - set(names))
    if unknown:
        raise UsageError(f"graph '{graph.name}' has no input named {', '.join(unknown)}; "
                         f"its inputs are {', '.join(names) or '(none)'}")
    arrays = []
    for v in graph.inputs:
        if v.name not in feeds:
            raise UsageError(f"graph '{graph.name}': missing input '{v.name}' ({v.type})")
        a = np.asarray(feeds[v.name])
        if a.dtype != v.type.np_dtype:
            raise UsageError(f"input '{v.name}' has element type {a.dtype}, expected "
                             f"{v.type.np_dtype} ({v.type})")
        if tuple(a.shape) != v.type.shape:
            raise UsageError(f"input '{v.name}' has shape {list(a.shape)}, expected "
                             f"{list(v.type.shape)}")
        arrays.append(a)
    return arrays


def run_graph(graph: Graph, feeds: dict[str, np.ndarray], keep_all: bool = False):
    """Execute `graph`; returns its outputs in order (and, with keep_all, a dict name→array
    of every value: inputs, params and each op result)."""
    arrays = check_feeds(graph, feeds)
    return run_bound(graph, arrays, keep_all)


def run_bound(graph: Graph, arrays: list[np.ndarray], keep_all: bool = False):
    """Execute `graph` with its inputs bound positionally to `arrays` (no checks)."""
    env: dict[Value, np.ndarray] = dict(zip(graph.inputs, arrays))
    for p in graph.params:
        env[p] = p.data
    last_use = _last_uses(graph)
    for i, op in enumerate(graph.ops):
        try:
            args = [None if v is None else env[v] for v in op.inputs]
        except KeyError as e:
            raise ModelError(f"{op.describe()}: operand %{e.args[0].name} is not defined "
                             f"before use") from None
        for v, r in zip(op.outputs, run_op(op, args)):
            env[v] = r
        if not keep_all:
            for v in op.inputs + op.outputs:
                if v is not None and last_use.get(v) == i:
                    env.pop(v, None)
    missing = [v.name for v in graph.outputs if v not in env]
    if missing:
        raise ModelError(f"graph '{graph.name}': output(s) {', '.join(missing)} are never "
                         f"produced")
    outputs = [env[v] for v in graph.outputs]
    if keep_all:
        return outputs, {v.name: a for v, a in env.items()}
    return outputs


def _last_uses(graph: Graph) -> dict[Value, int]:
    """Index of the last op reading each value (its producer's when unread); graph outputs
    and params are never freed."""
    keep = set(graph.outputs) | set(graph.params)
    last: dict[Value, int] = {}
    for i, op in enumerate(graph.ops):
        for v in op.inputs + op.outputs:
            if v is not None and v not in keep:
                last[v] = i
    return last
