"""The optimization passes: each rewrite on a small graph (what changes, what must vanish),
numerically against the reference executor, and the refusals with their reasons; then the
-O3 pipeline on whole zoo models (outputs, no BatchNormalization left, kernel counts)."""
from __future__ import annotations

import math


import numpy as np
import pytest

from edgecc.builder import GraphBuilder
from edgecc.kernels import run_graph
from edgecc.ops import verify_graph
from edgecc.pass_manager import PassContext
from edgecc.passes.cse import CSE
from edgecc.passes.eliminate_noop_movement import EliminateNoopMovement
from edgecc.passes.fold_affine_into_conv import FoldAffineIntoConv
from edgecc.passes.fold_constants import FoldConstants
from edgecc.passes.fold_pad import FoldPad
from edgecc.passes.fuse_conv_bn import FuseConvBN
from edgecc.passes.fuse_hardswish import FuseHardSwish
from edgecc.passes.fuse_kernels import FuseKernels
from edgecc.passes.lower_batchnorm import LowerBatchNorm
from edgecc.passes.simplify_algebra import SimplifyAlgebra
from tests.targets import AVX512

RNG = np.random.default_rng(0)


class G(GraphBuilder):
    """edgecc.builder.GraphBuilder with f32 inputs by keyword, G(x=(1,3,8,8)) (g.x is the
    first), g.p(array), uniform random weights g.rand(*shape, name=...) and g.ret(...)."""

    def __init__(self, **inputs):
        super().__init__("t")
        for n, s in inputs.items():
            self.input(n, s)
        self.x = self.graph.inputs[0]

    def p(self, data, name="w"):
        return self.param(name, np.asarray(data, dtype=np.float32))

    def rand(self, *shape, name="w", lo=-1.0, hi=1.0):
        return self.p(RNG.uniform(lo, hi, shape), name)

    def split(self, x, sizes, names):
        return self.ops("Split", [x], names[0], out_names=names, axis=0, split=sizes)

    ret = GraphBuilder.build


def feeds_for(graph):
    rng = np.random.default_rng(1)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype)
            for v in graph.inputs}


def apply(p, graph, rtol=None):
    """Run pass `p` on a copy of `graph`; check it still verifies and computes the same
    outputs within the pass's tolerance relative to each output's scale."""
    feeds = feeds_for(graph)
    ref = run_graph(graph, feeds)
    g = graph.clone()
    ctx = PassContext()
    changed = p.run(g, ctx)
    verify_graph(g)
    tol = rtol if rtol is not None else max(p.tolerance, 1e-6)
    for a, b in zip(ref, run_graph(g, feeds)):
        scale = max(float(np.abs(a).max()), 1e-6)
        assert np.abs(a - b).max() <= tol * scale, (p.name, np.abs(a - b).max(), scale)
    return g, changed, getattr(ctx, "refusals", [])


def kinds(graph):
    return [op.kind for op in graph.ops]


def conv(g, x, cout, k=3, name="conv", bias=True, **attrs):
    cin = x.type.shape[1] // attrs.get("group", 1)
    w = g.rand(cout, cin, k, k, name=name + "_w")
    b = [g.rand(cout, name=name + "_b")] if bias else []
    return g.op("Conv", [x, w] + b, name=name, pads=[k // 2] * 4, **attrs)


def bn(g, x, name="bn"):
    c = x.type.shape[1]
    stats = [g.rand(c, name="s", lo=0.5, hi=1.5), g.rand(c, name="b"), g.rand(c, name="m"),
             g.rand(c, name="v", lo=0.5, hi=2.0)]
    return g.op("BatchNormalization", [x] + stats, name=name, epsilon=1e-3)


# ---- fold-constants -------------------------------------------------------------------------

def test_fold_constants_computes_weight_subgraphs():
    g = G(x=(1, 4, 2, 2))
    r = g.op("Reshape", [g.rand(4)], shape=[1, 4, 1, 1])
    s = g.op("Mul", [r, g.p(2.0, "two")])
    graph = g.ret(g.op("Add", [g.x, s]))
    out, changed, _ = apply(FoldConstants(), graph)
    assert changed and kinds(out) == ["Add"]
    assert out.ops[0].inputs[1].is_param and out.ops[0].inputs[1].type.shape == (1, 4, 1, 1)


def test_fold_constants_leaves_large_expansions_and_outputs():
    g = G(x=(512, 1024))
    big = g.op("Expand", [g.p([1.0], "one")], shape=[512, 1024])
    out_only = g.op("Neg", [g.p(np.ones((1, 4)), "c")], name="out")   # a graph output
    graph = g.ret(g.op("Add", [g.x, big]), out_only)
    out, changed, _ = apply(FoldConstants(max_growth_bytes=1024), graph)
    assert not changed and kinds(out) == ["Expand", "Neg", "Add"]


# ---- cse --------------------------------------------------------------------------------------

def test_cse_merges_ops_and_weights():
    g = G(x=(2, 3))
    a = g.op("Relu", [g.x])
    b = g.op("Relu", [g.x])
    c1, c2 = g.p(np.ones((2, 3)), "c"), g.p(np.ones((2, 3)), "c")
    graph = g.ret(g.op("Add", [g.op("Mul", [a, c1]), g.op("Mul", [b, c2])]))
    out, changed, _ = apply(CSE(), graph)
    assert changed and kinds(out) == ["Relu", "Mul", "Add"]
    assert len(out.params) == 1


def test_cse_keeps_both_graph_outputs():
    g = G(x=(2, 3))
    graph = g.ret(g.op("Relu", [g.x], name="a"), g.op("Relu", [g.x], name="b"))
    out, changed, _ = apply(CSE(), graph)
    assert not changed and [v.name for v in out.outputs] == ["a", "b"]


def test_cse_distinguishes_attributes():
    g = G(x=(2, 3))
    graph = g.ret(g.op("Add", [g.op("LeakyRelu", [g.x], alpha=0.1),
                              g.op("LeakyRelu", [g.x], alpha=0.2)]))
    out, changed, _ = apply(CSE(), graph)
    assert not changed and len(out.ops) == 3


# ---- eliminate-noop-movement -------------------------------------------------------------

def test_noop_reshape_and_reshape_chains():
    g = G(x=(2, 3, 4))
    same = g.op("Reshape", [g.x], shape=[2, 3, 4])
    r = g.op("Reshape", [g.op("Flatten", [g.op("Relu", [same])], axis=1)], shape=[6, 4])
    graph = g.ret(g.op("Relu", [r]))
    out, changed, _ = apply(EliminateNoopMovement(), graph)
    assert changed and kinds(out) == ["Relu", "Reshape", "Relu"]
    assert out.ops[1].attrs["shape"] == [6, 4] and out.ops[1].inputs[0] is out.ops[0].output


def test_transpose_pairs_cancel_or_compose():
    g = G(x=(2, 3, 4))
    t = g.op("Transpose", [g.op("Transpose", [g.x], perm=[1, 2, 0])], perm=[2, 0, 1])
    u = g.op("Transpose", [g.op("Transpose", [g.x], perm=[1, 0, 2])], perm=[0, 2, 1])
    graph = g.ret(g.op("Relu", [t]), g.op("Relu", [u]))
    out, changed, _ = apply(EliminateNoopMovement(), graph)
    assert changed and sorted(kinds(out)) == ["Relu", "Relu", "Transpose"]
    r1, r2 = (v.producer for v in out.outputs)
    assert r1.inputs[0] is out.inputs[0]                           # cancelled
    assert r2.inputs[0].producer.attrs["perm"] == [1, 2, 0]        # [1,0,2] then [0,2,1]


def test_unit_axis_transpose_becomes_reshape_and_output_names_survive():
    g = G(x=(1, 5, 1, 3))
    r = g.op("Relu", [g.x])
    graph = g.ret(g.op("Transpose", [r], name="y", perm=[0, 2, 1, 3]))
    out, changed, _ = apply(EliminateNoopMovement(), graph)
    assert changed and kinds(out) == ["Relu", "Reshape"]
    assert [v.name for v in out.outputs] == ["y"]


def test_other_identity_movement():
    g = G(x=(2, 3))
    y = g.op("Slice", [g.x], starts=[0, 0], ends=[2, 3])
    y = g.op("Pad", [g.op("Expand", [y], shape=[2, 3])], pads=[0, 0, 0, 0])
    y = g.op("Concat", [g.op("Tile", [y], repeats=[1, 1])], axis=0)
    out, changed, _ = apply(EliminateNoopMovement(), g.ret(g.op("Relu", [y])))
    assert changed and kinds(out) == ["Relu"] and out.ops[0].inputs[0] is out.inputs[0]


def test_cse_merges_multi_output_ops():
    g = G(x=(4, 3))
    a, b = g.split(g.x, [1, 3], ["a", "b"])
    c, d = g.split(g.x, [1, 3], ["c", "d"])
    graph = g.ret(g.op("Add", [a, c]), g.op("Sub", [b, d]))
    out, changed, _ = apply(CSE(), graph)
    assert changed and kinds(out) == ["Split", "Add", "Sub"]


def test_real_transpose_is_kept():
    g = G(x=(2, 3))
    graph = g.ret(g.op("Transpose", [g.op("Relu", [g.x])], perm=[1, 0]))
    out, changed, _ = apply(EliminateNoopMovement(), graph)
    assert not changed and kinds(out) == ["Relu", "Transpose"]


# ---- fold-pad -------------------------------------------------------------------------------

def test_fold_pad_into_conv_and_pools():
    g = G(x=(1, 2, 6, 6))
    pz = g.op("Pad", [g.x], pads=[0, 0, 1, 2, 0, 0, 1, 0])
    c = conv(g, pz, 2)
    pinf = g.op("Pad", [g.x], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=-math.inf)
    m = g.op("MaxPool", [pinf], kernel_shape=[3, 3])
    a = g.op("AveragePool", [g.op("Pad", [g.x], pads=[0, 0, 1, 1, 0, 0, 1, 1])],
             kernel_shape=[3, 3])
    graph = g.ret(c, m, a)
    out, changed, _ = apply(FoldPad(), graph)
    assert changed and "Pad" not in kinds(out)
    by = {op.kind: op for op in out.ops}
    assert by["Conv"].attrs["pads"] == [2, 3, 2, 1]
    assert by["MaxPool"].attrs["pads"] == [1, 1, 1, 1]
    assert by["AveragePool"].attrs["pads"] == [1, 1, 1, 1]
    assert by["AveragePool"].attrs["count_include_pad"] == 1


@pytest.mark.parametrize("pad_attrs, pool_attrs, reason", [
    ({"value": 1.0}, None, "pad value 1.0 is not 0"),
    ({"mode": "reflect"}, None, "not constant"),
    ({"value": 0.0}, {"ceil_mode": 1}, "ceil_mode=1"),
    ({"value": 0.0}, {"pads": [1, 1, 1, 1]}, "count_include_pad=0"),
])
def test_fold_pad_refusals(pad_attrs, pool_attrs, reason):
    g = G(x=(1, 2, 6, 6))
    p = g.op("Pad", [g.x], pads=[0, 0, 1, 1, 0, 0, 1, 1], **pad_attrs)
    y = conv(g, p, 2) if pool_attrs is None else g.op("AveragePool", [p], kernel_shape=[3, 3],
                                                     **pool_attrs)
    out, changed, refusals = apply(FoldPad(), g.ret(y))
    assert not changed and "Pad" in kinds(out)
    assert any(reason in r[2] for r in refusals), refusals


# ---- simplify-algebra ------------------------------------------------------------------------

def test_simplify_algebra_identities_and_chains():
    g = G(x=(2, 3))
    a = g.op("Mul", [g.p(1.0, "one"), g.op("Add", [g.x, g.p(np.zeros(3), "zero")])])
    b = g.op("Div", [g.op("Mul", [g.op("Relu", [a]), g.p(3.0, "three")]), g.p(4.0, "four")])
    c = g.op("Sub", [g.op("Add", [b, g.p([1.0, 2.0, 3.0], "c1")]), g.p(0.5, "half")])
    graph = g.ret(c)
    out, changed, _ = apply(SimplifyAlgebra(), graph)
    assert changed and kinds(out) == ["Relu", "Mul", "Add"]
    assert np.allclose(out.ops[1].inputs[1].data, 0.75)
    assert np.allclose(out.ops[2].inputs[1].data, [0.5, 1.5, 2.5])


def test_simplify_algebra_chain_that_cancels():
    g = G(x=(2, 3))
    y = g.op("Div", [g.op("Mul", [g.op("Relu", [g.x]), g.p(4.0, "four")]), g.p(4.0, "four")])
    out, changed, _ = apply(SimplifyAlgebra(), g.ret(g.op("Neg", [y])))
    assert changed and kinds(out) == ["Relu", "Neg"]


def test_simplify_algebra_keeps_broadcasting_and_shared_intermediates():
    g = G(x=(1, 3))
    up = g.op("Mul", [g.x, g.p(np.ones((4, 3)), "ones")])          # broadcasts x up
    m = g.op("Mul", [g.x, g.p(2.0, "two")])
    graph = g.ret(up, g.op("Mul", [m, g.p(3.0, "three")]), m)      # m is read twice
    out, changed, _ = apply(SimplifyAlgebra(), graph)
    assert not changed and len(out.ops) == 3


# ---- fuse-conv-bn ----------------------------------------------------------------------------

def test_conv_bn_folds_into_weights():
    g = G(x=(1, 3, 8, 8))
    graph = g.ret(g.op("Relu", [bn(g, conv(g, g.x, 4, bias=False))]))
    out, changed, _ = apply(FuseConvBN(), graph)
    assert changed and kinds(out) == ["Conv", "Relu"]
    assert out.ops[0].inputs[2] is not None


def test_conv_transpose_grouped_and_gemm_bn():
    g = G(x=(1, 4, 5, 5), a=(3, 6))
    w = g.rand(4, 3, 3, 3, name="wt")
    ct = g.op("ConvTranspose", [g.x, w, g.rand(6, name="bt")], group=2, strides=[2, 2])
    gm = g.op("Gemm", [g.graph.inputs[1], g.rand(5, 6, name="wg"), g.rand(5, name="c")],
              transB=1, alpha=0.5, beta=2.0)
    graph = g.ret(bn(g, ct, "bn1"), bn(g, gm, "bn2"))
    out, changed, _ = apply(FuseConvBN(), graph, rtol=1e-5)
    assert changed and sorted(kinds(out)) == ["ConvTranspose", "Gemm"]


def test_gemm_without_bias_then_per_column_mul_add():
    g = G(a=(3, 6))
    gm = g.op("Gemm", [g.x, g.rand(6, 5, name="wg")], alpha=2.0)
    y = g.op("Add", [g.op("Mul", [gm, g.rand(5, name="s")]), g.rand(1, 5, name="t")])
    out, changed, _ = apply(FuseConvBN(), g.ret(y))
    assert changed and kinds(out) == ["Gemm"] and out.ops[0].attrs["alpha"] == 2.0


def test_conv_mul_add_per_channel_fold():
    g = G(x=(1, 3, 8, 8))
    c = conv(g, g.x, 4)
    m = g.op("Mul", [g.rand(4, 1, 1, name="scale"), c])
    a = g.op("Sub", [m, g.rand(1, 4, 1, 1, name="shift")])
    graph = g.ret(g.op("Div", [a, g.p(2.0, "two")]))
    out, changed, _ = apply(FuseConvBN(), graph)
    assert changed and kinds(out) == ["Conv"]


def test_conv_bn_refuses_when_conv_output_is_shared():
    g = G(x=(1, 3, 8, 8))
    c = conv(g, g.x, 4)
    graph = g.ret(bn(g, c), g.op("Relu", [c]))
    out, changed, refusals = apply(FuseConvBN(), graph)
    assert not changed and "BatchNormalization" in kinds(out)
    assert refusals == [("fuse-conv-bn", "node 'bn' (BatchNormalization)",
                         "node 'conv' (Conv) result %conv has 1 other consumer(s) (or is a "
                         "graph output); folding would change what they read")]


def test_conv_mul_refuses_non_per_channel_constant():
    g = G(x=(1, 3, 8, 8))
    graph = g.ret(g.op("Mul", [conv(g, g.x, 4), g.rand(8, 8, name="spatial")], name="m"))
    out, changed, refusals = apply(FuseConvBN(), graph)
    assert not changed and kinds(out) == ["Conv", "Mul"]
    assert len(refusals) == 1 and "is not per-channel" in refusals[0][2]
    assert "%spatial of shape [8, 8]" in refusals[0][2]


def test_lower_batchnorm_without_conv():
    g = G(x=(1, 3, 4, 4))
    graph = g.ret(bn(g, g.op("Relu", [g.x])))
    out, changed, refusals = apply(FuseConvBN(), graph)
    assert not changed and "comes from node 'relu0' (Relu)" in refusals[0][2]
    out, changed, _ = apply(LowerBatchNorm(), graph)
    assert changed and kinds(out) == ["Relu", "Mul", "Add"]


# ---- fold-affine-into-conv ------------------------------------------------------------------

def test_scale_and_shift_fold_into_grouped_1x1_conv():
    g = G(x=(1, 4, 5, 5))
    v = g.op("Add", [g.op("Mul", [g.op("Relu", [g.x]), g.rand(4, 1, 1, name="a")]),
                     g.rand(1, 4, 1, 1, name="b")])
    y = g.op("Conv", [v, g.rand(6, 2, 1, 1, name="w"), g.rand(6, name="c")], group=2)
    out, changed, _ = apply(FoldAffineIntoConv(), g.ret(y))
    assert changed and kinds(out) == ["Relu", "Conv"]


def test_shift_before_padded_conv_is_refused_scale_is_not():
    g = G(x=(1, 4, 5, 5))
    v = g.op("Mul", [g.op("Relu", [g.x]), g.rand(4, 1, 1, name="a")])
    y = conv(g, g.op("Add", [v, g.rand(4, 1, 1, name="b")], name="shift"), 4, group=4)
    z = conv(g, g.op("Mul", [g.x, g.rand(4, 1, 1, name="a2")]), 4, name="scaled", group=2)
    out, changed, refusals = apply(FoldAffineIntoConv(), g.ret(y, z))
    assert changed and kinds(out) == ["Relu", "Mul", "Add", "Conv", "Conv"]
    assert len(refusals) == 1 and "would pad with 0 instead of the shift" in refusals[0][2]


# ---- fuse-hardswish --------------------------------------------------------------------------

def _relu6_plus3(g, x):
    return g.op("Clip", [g.op("Add", [g.p(3.0, "three"), x])], min=0.0, max=6.0)


HSWISH_FORMS = {
    "x*hardsigmoid": lambda g, x: g.op("Mul", [x, g.op("HardSigmoid", [x], alpha=1 / 6,
                                                       beta=0.5)]),
    "(relu6/6)*x": lambda g, x: g.op("Mul", [g.op("Div", [_relu6_plus3(g, x),
                                                          g.p(6.0, "six")]), x]),
    "(x*relu6)/6": lambda g, x: g.op("Div", [g.op("Mul", [x, _relu6_plus3(g, x)]),
                                             g.p(6.0, "six")]),
    "(relu6*x)*(1/6)": lambda g, x: g.op("Mul", [g.op("Mul", [_relu6_plus3(g, x), x]),
                                                 g.p(1 / 6, "sixth")]),
}


@pytest.mark.parametrize("form", sorted(HSWISH_FORMS))
def test_fuse_hardswish_forms(form):
    g = G(x=(1, 4, 3, 3))
    x = g.op("Mul", [g.x, g.p(4.0, "four")])            # values around the kinks at ±3
    graph = g.ret(HSWISH_FORMS[form](g, x))
    out, changed, _ = apply(FuseHardSwish(), graph)
    assert changed and kinds(out) == ["Mul", "HardSwish"]
    assert out.ops[1].inputs[0] is out.ops[0].output


def test_fuse_hardswish_refuses_other_constants_and_shared_parts():
    g = G(x=(1, 4, 3, 3))
    hs = g.op("HardSigmoid", [g.x], alpha=0.2, beta=0.5)
    y1 = g.op("Mul", [g.x, hs])                                     # alpha 0.2: not HardSwish
    clip = g.op("Clip", [g.op("Add", [g.x, g.p(3.0, "three")])], min=0.0, max=6.0)
    y2 = g.op("Div", [g.op("Mul", [g.x, clip]), g.p(6.0, "six")])
    graph = g.ret(y1, y2, clip)                                      # clip is also an output
    out, changed, _ = apply(FuseHardSwish(), graph)
    assert not changed and "HardSwish" not in kinds(out)


# ---- fuse-kernels ----------------------------------------------------------------------------

def fused_ops(graph):
    return [op for op in graph.ops if op.kind == "Fused"]


def test_conv_bias_residual_relu_is_one_kernel():
    g = G(x=(1, 4, 6, 6))
    c = conv(g, g.x, 4)
    y = g.op("Relu", [g.op("Add", [g.op("Add", [c, g.rand(1, 4, 1, 1, name="b")]), g.x])])
    out, changed, _ = apply(FuseKernels(), g.ret(y))
    assert changed and kinds(out) == ["Fused"]
    f = out.ops[0]
    assert f.attrs["kernel"] == "conv_add_add_relu"
    assert [op.kind for op in f.attrs["body"].ops] == ["Conv", "Add", "Add", "Relu"]
    assert [v.name for v in f.outputs] == [out.outputs[0].name]
    assert all(v.is_param or v is out.inputs[0] for v in f.inputs)


def test_silu_epilogue_and_shared_values_stay_outputs():
    g = G(x=(1, 3, 6, 6))
    c = conv(g, g.x, 4)
    s = g.op("Mul", [c, g.op("Sigmoid", [c])])                      # SiLU reads c twice
    other = conv(g, c, 4, name="other")                              # c read outside too
    out, changed, _ = apply(FuseKernels(), g.ret(g.op("Add", [s, other])))
    assert changed
    first = fused_ops(out)[0]
    assert [op.kind for op in first.attrs["body"].ops] == ["Conv", "Sigmoid", "Mul"]
    assert {v.name for v in first.outputs} == {c.name, s.name}


def test_no_fusion_through_an_outside_path():
    # x → conv → a ; a → MaxPool (not fusable) → Add(a, pool) would be a cycle if Add joined
    g = G(x=(1, 2, 6, 6))
    a = conv(g, g.x, 2)
    p = g.op("MaxPool", [a], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    out, changed, _ = apply(FuseKernels(), g.ret(g.op("Add", [a, p])))
    assert not changed and kinds(out) == ["Conv", "MaxPool", "Add"]


def test_reduction_with_elementwise_prologue_and_chains():
    g = G(x=(1, 4, 5, 5), y=(1, 4, 5, 5))
    e = g.op("Mul", [g.op("Add", [g.x, g.graph.inputs[1]]), g.p(0.5, "half")])
    pool = g.op("GlobalAveragePool", [g.op("Relu", [e])])
    chain = g.op("Sigmoid", [g.op("Sub", [g.x, g.op("Exp", [g.graph.inputs[1]])])])
    sm = g.op("Softmax", [g.op("Tanh", [g.op("Relu", [chain])])], axis=1)
    out, changed, _ = apply(FuseKernels(), g.ret(pool, sm, chain))
    assert changed and kinds(out) == ["Fused", "Fused", "Fused"]
    labels = sorted(f.attrs["kernel"] for f in out.ops)
    assert labels == ["add_mul_relu_gap", "exp_sub_sigmoid", "relu_tanh_softmax"]


def test_matmul_epilogue():
    g = G(a=(2, 3, 4))
    mm = g.op("MatMul", [g.x, g.rand(4, 5, name="w")])
    y = g.op("Tanh", [g.op("Add", [mm, g.rand(5, name="b")])])
    out, changed, _ = apply(FuseKernels(), g.ret(y))
    assert changed and kinds(out) == ["Fused"] and out.ops[0].attrs["kernel"] == "matmul_add_tanh"


def test_group_value_that_is_a_graph_output_stays_a_result():
    g = G(x=(1, 2, 4, 4))
    c = conv(g, g.x, 2)
    r = g.op("Relu", [c])
    out, changed, _ = apply(FuseKernels(), g.ret(g.op("Sigmoid", [r]), r))
    assert changed and kinds(out) == ["Fused"]
    assert [v.name for v in out.ops[0].outputs] == [r.name, out.outputs[0].name]


def test_injective_producers_join_epilogues_and_chains():
    g = G(x=(1, 2, 4, 4), y=(1, 2, 2, 2))
    up = g.op("Resize", [g.graph.inputs[1]], sizes=[1, 2, 4, 4], scales=[1.0, 1.0, 2.0, 2.0])
    a = g.op("Add", [conv(g, g.x, 2), up])                         # FPN: conv + upsample
    cat = g.op("Concat", [g.x, a], axis=1)
    out, changed, _ = apply(FuseKernels(), g.ret(g.op("Relu", [cat])))
    assert changed and kinds(out) == ["Fused", "Fused"]
    assert [f.attrs["kernel"] for f in out.ops] == ["conv_resize_add", "concat_relu"]


def test_no_injective_prologue_on_anchors_or_through_the_group():
    g = G(x=(1, 2, 4, 4))
    c = conv(g, g.op("Transpose", [g.x], perm=[0, 1, 3, 2]), 2)    # would be a conv prologue
    t = g.op("Transpose", [c], perm=[0, 1, 3, 2])                  # reads the conv group
    out, changed, _ = apply(FuseKernels(), g.ret(g.op("Add", [c, t])))
    # the conv keeps its input transpose and cannot take Add (its operand t depends on the
    # conv through an outside op); Add takes t's transpose as a chain of its own
    assert changed and kinds(out) == ["Transpose", "Conv", "Fused"]
    assert out.ops[2].attrs["kernel"] == "transpose_add"


def test_single_ops_are_not_wrapped():
    g = G(x=(1, 2, 4, 4))
    out, changed, _ = apply(FuseKernels(), g.ret(g.op("MaxPool", [conv(g, g.x, 2)],
                                                       kernel_shape=[2, 2])))
    assert not changed and kinds(out) == ["Conv", "MaxPool"]


# ---- whole models ----------------------------------------------------------------------------

VIEW_KINDS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
MODELS = ["squeezenet", "ppocr_cls", "shufflenet", "ppocr_det"]
SLOW_MODELS = ["resnet50", "inception_v1", "inception_v2", "densenet121", "vgg19",
               "bvlc_alexnet", "zfnet512"]
ALL_MODELS = MODELS + [pytest.param(m, marks=pytest.mark.slow) for m in SLOW_MODELS]


def kernel_count(graph) -> int:
    """Kernels launched per inference: top-level ops except views (the host aliases those)."""
    return sum(op.kind not in VIEW_KINDS for op in graph.ops)


def all_kinds(graph) -> set[str]:
    found = set()
    for op in graph.ops:
        found.add(op.kind)
        if op.kind == "Fused":
            found |= all_kinds(op.attrs["body"])
    return found


def ort_node_count(path, tmp_path) -> int:
    """Nodes of onnxruntime's ORT_ENABLE_ALL graph, without its NCHWc Reorder nodes."""
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "ort_optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    nodes = onnx.load(so.optimized_model_filepath).graph.node
    return sum("Reorder" not in n.op_type for n in nodes)


def imported(name, zoo_path):
    from edgecc import zoo
    from edgecc.onnx_import import import_onnx
    path = zoo_path(name)
    return path, import_onnx(str(path), zoo.default_input_shapes(name)), zoo.sample_inputs(name)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_o3_whole_model(name, zoo_path, tmp_path):
    from edgecc.pass_manager import PassManager, deep_clone, pipeline
    path, graph, feeds = imported(name, zoo_path)
    want = run_graph(graph, feeds)
    opt = PassManager(pipeline(3), target=AVX512).run(deep_clone(graph))
    got = run_graph(opt, feeds)
    assert [v.name for v in opt.outputs] == [v.name for v in graph.outputs]
    for a, b in zip(want, got):
        scale = max(float(np.abs(a).max()), 1e-12)
        assert np.abs(a - b).max() <= 1e-4 * scale
    assert "BatchNormalization" not in all_kinds(opt)
    ours, ort_nodes = kernel_count(opt), ort_node_count(path, tmp_path)
    print(f"{name}: kernels {kernel_count(graph)} -> {ours} (onnxruntime: {ort_nodes} nodes)")
    assert ours <= ort_nodes
    assert ours < kernel_count(graph)


@pytest.mark.slow
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("name", MODELS + SLOW_MODELS)
def test_pipelines_keep_their_promises(name, level, zoo_path):
    """--check-numerics semantics: after every pass the drift stays within its tolerance."""
    from edgecc.pass_manager import PassManager, pipeline
    _, graph, _ = imported(name, zoo_path)
    PassManager(pipeline(level), check_numerics=True, target=AVX512).run(graph)


# ---- conv1d-as-2d -----------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[5], strides=[1], pads=[2, 2], dilations=[1], group=1),
    dict(kernel_shape=[3], strides=[2], pads=[1, 0], dilations=[2], group=1),
    dict(kernel_shape=[7], strides=[1], pads=[3, 3], dilations=[1], group=16),   # depthwise
], ids=["plain", "strided-dilated", "depthwise"])
def test_conv1d_runs_as_a_one_row_2d_conv(attrs):
    from edgecc.passes.conv1d_as_2d import Conv1dAs2d
    g = G(x=(2, 16, 37))
    k = attrs["kernel_shape"][0]
    w = g.rand(24 if attrs["group"] == 1 else 16, 16 // attrs["group"], k, name="w1")
    y = g.op("Conv", [g.x, w, g.rand(w.type.shape[0], name="b1")], name="c1", **attrs)
    graph = g.ret(g.op("Relu", [y]), y)                # the conv's result is also an output
    out, changed, _ = apply(Conv1dAs2d(), graph)
    assert changed and kinds(out) == ["Reshape", "Conv", "Reshape", "Relu"]
    c = out.ops[1]
    assert c.inputs[0].type.rank == 4 and c.attrs["kernel_shape"] == [1, k]
    assert [v.name for v in out.outputs] == [v.name for v in graph.outputs]


def test_conv1d_gets_the_blocked_fast_schedule_in_a_bundle(tmp_path):
    """At -O3 a 1-D conv is a blocked 2-D conv kernel (not the generic schedule) and the
    bundle agrees with onnxruntime."""
    import json
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    import edgecc
    w = numpy_helper.from_array(RNG.standard_normal((32, 16, 5)).astype(np.float32), "W")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[2, 2], strides=[2]),
             helper.make_node("Relu", ["c"], ["y"])]
    m = helper.make_model(helper.make_graph(
        nodes, "c1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 400])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 200])], [w]),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp_path / "c1d.onnx")
    art = edgecc.compile(str(tmp_path / "c1d.onnx"), outdir=str(tmp_path / "b"), mcpu="x86-64-v3")
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["ops_after"].get("LayoutTransform", 0) >= 1     # blocked NCHW{c}c conv
    assert "Conv" not in report["ops_after"]                       # (inside a Fused kernel)
    x = RNG.standard_normal((1, 16, 400)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(art.run({"x": x})[0] - want).max() <= 1e-4 * np.abs(want).max()
