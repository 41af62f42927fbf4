"""Kernels at the arena's peak built without scratch (bundle_layout.plan_bundle with
peak_scratch_free): on a chain-like CNN the activations alone reach the unfused ONNX graph's
lower bound, so any kernel scratch at the peak would exceed it."""
from __future__ import annotations

import numpy as np
import pytest

from edgecc import zoo
from edgecc.backends.bundle_layout import plan_bundle
from edgecc.backends.bundle_workspace import kernel_workspace
from edgecc.backends.memory_alloc import lower_bound
from edgecc.backends.memory_liveness import liveness
from edgecc.backends.targets import make_target
from edgecc.backends.tvm_build import build_kernels, run_kernels_in_tvm
from edgecc.driver import Options, optimize
from edgecc.ir import Graph
from edgecc.kernels.executor import run_graph
from edgecc.onnx_import import import_onnx


@pytest.fixture(scope="module")
def alexnet(zoo_source):
    graph = import_onnx(str(zoo_source("bvlc_alexnet")), zoo.default_input_shapes("bvlc_alexnet"))
    onnx_lb = lower_bound(liveness(graph, views=False, inplace=False))
    return optimize(graph, Options(opt_level=3))[0], onnx_lb


def test_peak_kernels_drop_their_scratch_and_the_arena_meets_the_onnx_bound(alexnet):
    graph, onnx_lb = alexnet
    target = make_target("x86_64")
    plain = plan_bundle(graph, target)
    lean = plan_bundle(graph, target, peak_scratch_free=True)
    assert plain.memory.arena_bytes > onnx_lb           # the scratch of the peak kernel
    assert lean.scratch_free                             # ... which is now built without it
    assert lean.memory.arena_bytes <= onnx_lb
    for i in lean.scratch_free:
        assert plain.workspace[i].per_task > 0 and i not in lean.workspace
    # only kernels at the peak: everything else keeps its (faster) scratch
    assert set(plain.workspace) - set(lean.workspace) == set(lean.scratch_free)


def test_scratch_free_kernel_computes_the_same(alexnet):
    graph, _ = alexnet
    lean = plan_bundle(graph, make_target("x86_64"), peak_scratch_free=True)
    i = min(lean.scratch_free)
    op = graph.ops[i]
    g = Graph("one", inputs=[v for v in op.inputs if v is not None and v.data is None],
              params=[v for v in op.inputs if v is not None and v.data is not None],
              ops=[op], outputs=list(op.outputs))
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    assert not kernel_workspace(g, "x86_64", scratch_free=frozenset({0}))
    got = run_kernels_in_tvm(g, feeds, scratch_free=frozenset({0}))
    for a, b in zip(run_graph(g, feeds), got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))
