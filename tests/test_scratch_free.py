"""Kernels at the arena's peak built without scratch (bundle.program.plan_bundle with
peak_scratch_free): on a chain-like CNN the activations alone reach the unfused ONNX graph's
lower bound, so any kernel scratch at the peak would exceed it. ("Scratch-free" kernels keep
the least scratch their class runs fast with: none for most, one register tile's padded input
for blocked convs.)"""
from __future__ import annotations

import numpy as np
import pytest

from edgecc import zoo
from edgecc.backends.bundle.program import plan_bundle
from edgecc.backends.memory.alloc import lower_bound
from edgecc.backends.memory.liveness import liveness
from edgecc.backends.tvm.build import KernelSet, run_kernels_in_tvm
from edgecc.driver import Options, optimize
from edgecc.ir import Graph
from edgecc.kernels.executor import run_graph
from edgecc.onnx_import import import_onnx
from tests.targets import X86, target_id


@pytest.fixture(scope="module", params=X86, ids=target_id)
def alexnet(zoo_source, request):
    """(graph, its unfused ONNX lower bound, KernelSet) for each x86 variant."""
    target = request.param
    graph = import_onnx(str(zoo_source("bvlc_alexnet")), zoo.default_input_shapes("bvlc_alexnet"))
    onnx_lb = lower_bound(liveness(graph, views=False, inplace=False))
    graph = optimize(graph, Options(opt_level=3), target=target)[0]
    return graph, onnx_lb, KernelSet(graph, target)


def test_peak_kernels_drop_their_scratch_and_the_arena_meets_the_onnx_bound(alexnet):
    graph, onnx_lb, kernels = alexnet
    plain = plan_bundle(graph, kernels)
    lean = plan_bundle(graph, kernels, peak_scratch_free=True)
    assert plain.memory.arena_bytes > onnx_lb           # the scratch of the peak kernel
    assert lean.scratch_free                             # ... which is now built without it
    assert lean.memory.arena_bytes <= onnx_lb
    for i in lean.scratch_free:
        assert plain.workspace[i].per_task > 0 and i not in lean.workspace
    # only kernels at the peak: everything else keeps its (faster) scratch
    assert set(plain.workspace) - set(lean.workspace) == set(lean.scratch_free)


def test_scratch_free_kernel_computes_the_same(alexnet):
    graph, _, kernels = alexnet
    lean = plan_bundle(graph, kernels, peak_scratch_free=True)
    i = min(lean.scratch_free)
    op = graph.ops[i]
    g = _single_op_graph(op)
    assert not KernelSet(g, kernels.target).scratch(frozenset({0}))
    assert kernels.kernel(i, lean=True).func.endswith("_lean")
    if not kernels.target.runs_here():
        return
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    got = run_kernels_in_tvm(g, feeds, kernels.target, lean=frozenset({0}))
    for a, b in zip(run_graph(g, feeds), got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))


@pytest.mark.parametrize("target", X86, ids=target_id)
def test_padded_blocked_conv_at_the_peak_keeps_one_tile_of_scratch(zoo_source, target):
    """resnet50's 3x3 stride-2 conv at the arena's peak: reading padded rows in place would
    run it 2.4x slower, so its lean schedule copies one register tile's padded input instead
    of a task's rows: far less scratch, same results."""
    name = "resnet50"
    graph = optimize(import_onnx(str(zoo_source(name)), zoo.default_input_shapes(name)),
                     Options(opt_level=3), target=target)[0]
    kernels = KernelSet(graph, target)
    plain = plan_bundle(graph, kernels)
    lean = plan_bundle(graph, kernels, peak_scratch_free=True)
    padded = [i for i in lean.scratch_free
              if any(o.kind == "Conv" and o.inputs[1].type.shape[2] > 1
                     for o in _ops_of(graph.ops[i]))]
    assert padded
    assert lean.memory.arena_bytes < plain.memory.arena_bytes
    i = padded[0]
    assert 0 < lean.workspace[i].bytes(4) * 4 < plain.workspace[i].bytes(4)
    g = _single_op_graph(graph.ops[i])
    if not target.runs_here():
        return
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    got = run_kernels_in_tvm(g, feeds, target, lean=frozenset({0}))
    for a, b in zip(run_graph(g, feeds), got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))


def _ops_of(op) -> list:
    return op.attrs["body"].ops if op.kind == "Fused" else [op]


def _single_op_graph(op) -> Graph:
    return Graph("one", inputs=[v for v in op.inputs if v is not None and v.data is None],
                 params=[v for v in op.inputs if v is not None and v.data is not None],
                 ops=[op], outputs=list(op.outputs))
