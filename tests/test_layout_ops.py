"""The blocked channel layout NCHW{c}c (compiler/ops/layout.py): helpers, LayoutTransform, the
blocked forms of Conv and the pools (shapes, verifier errors, reference executor against the
NCHW form), FLOPs, text IR round trip, ONNX export against onnxruntime, and the passes that
rewrite Conv weights or pads."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgecc.errors import ModelError
from edgecc.builder import GraphBuilder
from edgecc.ir import Graph, TensorType, Value
from edgecc.kernels import run_graph, run_op
from edgecc.onnx_export import export_onnx
from edgecc.opdef import OpRuleError
from edgecc.ops import build_op, verify_graph
from edgecc.ops import count_flops
from edgecc.ops.layout import (NCHW, Layout, block_conv_weight, block_nchw, unblock_conv_weight,
                               unblock_nchw)
from edgecc.pass_manager import PassContext
from edgecc.passes.fold_affine_into_conv import FoldAffineIntoConv
from edgecc.passes.fold_pad import FoldPad
from edgecc.passes.fuse_conv_bn import FuseConvBN
from edgecc.textir import parse_graph, print_graph
from tests.onnx_cases import ort_run, rel_err

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.uniform(-1, 1, shape).astype(dtype)


def V(name, *shape, dtype="f32"):
    return Value(name, TensorType(dtype, shape))


class Builder(GraphBuilder):
    """edgecc.builder.GraphBuilder with layout conversions."""

    def to_blocked(self, v, c):
        return self.op("LayoutTransform", [v], src_layout="NCHW", dst_layout=f"NCHW{c}c")

    def to_nchw(self, v):
        return self.op("LayoutTransform", [v], src_layout=f"NCHW{v.type.shape[-1]}c",
                       dst_layout="NCHW")

    ret = GraphBuilder.build


# ---- helpers ---------------------------------------------------------------------------------

def test_parse_layout():
    assert Layout.parse("NCHW") == NCHW and not NCHW.is_blocked and NCHW.block is None
    assert Layout.parse("NCHW16c") == Layout(16) and Layout.parse("NCHW1c").block == 1
    assert Layout.parse(Layout(8)) == Layout(8) and Layout(8).is_blocked
    assert str(Layout(16)) == "NCHW16c" and str(NCHW) == "NCHW"
    assert Layout.parse(str(Layout(4))) == Layout(4)           # spelled and parsed back
    for bad in ("NHWC", "NCHW0c", "NCHW08c", "NCHWc", "nchw8c", "NCHW8C", 8, None):
        with pytest.raises(OpRuleError, match="neither 'NCHW' nor"):
            Layout.parse(bad)


@pytest.mark.parametrize("c", [4, 8, 16])
def test_block_nchw_index_rule_and_inverse(c):
    x = rand(2, 32, 5, 7)
    b = block_nchw(x, c)
    assert b.shape == (2, 32 // c, 5, 7, c) and b.flags.c_contiguous
    n, cb, h, w, i = 1, 32 // c - 1, 3, 6, c - 1
    assert b[n, cb, h, w, i] == x[n, cb * c + i, h, w]
    assert np.array_equal(unblock_nchw(b), x)
    with pytest.raises(ValueError, match="divisible by"):
        block_nchw(rand(1, 12, 2, 2), 8)


@pytest.mark.parametrize("c", [8, 16])
def test_block_conv_weight_rule_and_inverse(c):
    w = rand(64, 32, 3, 3)
    w6 = block_conv_weight(w, c, depthwise=False)
    assert w6.shape == (64 // c, 32 // c, 3, 3, c, c)
    mb, cb, y, x, i, o = 2, 1, 0, 2, 3, c - 1
    assert w6[mb, cb, y, x, i, o] == w[mb * c + o, cb * c + i, y, x]
    assert np.array_equal(unblock_conv_weight(w6), w)
    dw = rand(32, 1, 3, 3)
    d6 = block_conv_weight(dw, c, depthwise=True)
    assert d6.shape == (32 // c, 1, 3, 3, 1, c)
    assert d6[1, 0, 2, 1, 0, 5] == dw[c + 5, 0, 2, 1]
    assert np.array_equal(unblock_conv_weight(d6), dw)


# ---- LayoutTransform -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["f32", "i64", "bool", "u8"])
def test_layout_transform_types_and_round_trip(dtype):
    to = build_op("LayoutTransform", [V("x", 1, 32, 14, 14, dtype=dtype)],
                  {"src_layout": "NCHW", "dst_layout": "NCHW8c"})
    assert to.output.type == TensorType(dtype, (1, 4, 14, 14, 8))
    back = build_op("LayoutTransform", [to.output], {"src_layout": "NCHW8c",
                                                     "dst_layout": "NCHW"})
    assert back.output.type == TensorType(dtype, (1, 32, 14, 14))
    x = (RNG.uniform(-50, 50, (1, 32, 14, 14)) > 0 if dtype == "bool" else
         RNG.integers(0, 100, (1, 32, 14, 14))).astype(to.inputs[0].type.np_dtype)
    (b,) = run_op(to, [x])
    assert np.array_equal(b, block_nchw(x, 8))
    (y,) = run_op(back, [b])
    assert y.dtype == x.dtype and np.array_equal(y, x)
    assert count_flops(to) == count_flops(back) == 0


@pytest.mark.parametrize("shape,attrs,message", [
    ((1, 32, 4, 4), {"src_layout": "NCHW", "dst_layout": "NCHW"}, "exactly one of"),
    ((1, 4, 4, 4, 8), {"src_layout": "NCHW8c", "dst_layout": "NCHW4c"}, "exactly one of"),
    ((1, 32, 4, 4), {"src_layout": "NCHW", "dst_layout": "NHWC"},
     "attribute dst_layout='NHWC' must be 'NCHW' or 'NCHW{c}c'"),
    ((1, 12, 4, 4), {"src_layout": "NCHW", "dst_layout": "NCHW8c"},
     r"12 channels of X \[1,12,4,4\] are not divisible by the block size 8"),
    ((1, 32, 4), {"src_layout": "NCHW", "dst_layout": "NCHW8c"}, "needs a rank-4 X"),
    ((1, 4, 4, 4, 16), {"src_layout": "NCHW8c", "dst_layout": "NCHW"},
     r"needs the last axis of X to be 8, got \[1,4,4,4,16\]"),
    ((1, 32, 4, 4), {"src_layout": "NCHW8c", "dst_layout": "NCHW"}, "needs X of rank 5"),
    ((1, 32, 4, 4), {"src_layout": "NCHW"}, "requires attribute 'dst_layout'"),
])
def test_layout_transform_errors(shape, attrs, message):
    with pytest.raises(OpRuleError, match=message):
        build_op("LayoutTransform", [V("x", *shape)], attrs)


# ---- Conv and pools: the blocked form computes what the NCHW form computes --------------------

def _nchw_vs_blocked(kind, x, c, attrs, w=None, b=None, w_as_param=True):
    """Run `kind` on x (NCHW) and as LayoutTransform -> blocked op -> LayoutTransform;
    return both outputs and both graphs."""
    ref = Builder("nchw")
    ins = [ref.input("x", x)]
    if w is not None:
        ins += [ref.operand("w", w, w_as_param),
                None if b is None else ref.param("b", b)]
    ref_g = ref.ret(ref.op(kind, ins, name="op", **attrs))
    blk = Builder("blocked")
    ins = [blk.to_blocked(blk.input("x", x), c)]
    if w is not None:
        w6 = block_conv_weight(w, c, depthwise=attrs.get("group", 1) != 1)
        ins += [blk.operand("w", w6, w_as_param),
                None if b is None else blk.param("b", b)]
    y = blk.op(kind, ins, name="op", layout=f"NCHW{c}c", **attrs)
    blk_g = blk.ret(blk.to_nchw(y))
    (want,) = run_graph(ref_g, ref.feeds)
    (got,) = run_graph(blk_g, blk.feeds)
    return want, got, ref_g, blk_g


CONVS = [  # (C, M, H, attrs, c, bias)
    (32, 64, 14, {"pads": [1, 1, 1, 1]}, 8, True),
    (64, 32, 14, {"pads": [1, 0, 2, 1], "strides": [2, 2]}, 16, False),
    (32, 32, 14, {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, 16, True),
    (64, 64, 14, {}, 8, True),                                     # 1x1
    (32, 32, 14, {"group": 32, "pads": [1, 1, 1, 1]}, 8, True),    # depthwise
    (64, 64, 15, {"group": 64, "strides": [2, 2], "pads": [1, 1, 1, 1]}, 16, False),
]


@pytest.mark.parametrize("C,M,H,attrs,c,bias", CONVS)
def test_conv_blocked_equals_nchw(C, M, H, attrs, c, bias):
    k = 1 if not attrs else 3
    cg = 1 if attrs.get("group", 1) != 1 else C
    x, w = rand(1, C, H, H), rand(M, cg, k, k)
    b = rand(M) if bias else None
    want, got, ref_g, blk_g = _nchw_vs_blocked("Conv", x, c, attrs, w, b)
    assert got.shape == want.shape and np.array_equal(got, want)
    conv, ref_conv = blk_g.ops[1], ref_g.ops[0]
    assert conv.output.type.shape == (1, M // c) + want.shape[2:] + (c,)
    assert conv.attrs["kernel_shape"] == [k, k]        # filled in from W6's axes 2, 3
    assert count_flops(conv) == count_flops(ref_conv) > 0


def test_conv_blocked_with_computed_weights():
    x, w = rand(1, 32, 9, 9), rand(16, 32, 3, 3)
    want, got, _, _ = _nchw_vs_blocked("Conv", x, 8, {"strides": [2, 2]}, w, None,
                                       w_as_param=False)
    assert np.array_equal(got, want)


POOLS = [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 8),
    ("MaxPool", {"kernel_shape": [2, 3], "dilations": [2, 1], "ceil_mode": 1,
                 "strides": [2, 2]}, 16),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 8),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "strides": [2, 2],
                     "count_include_pad": 1}, 16),
    ("AveragePool", {"kernel_shape": [3, 2], "pads": [2, 1, 1, 1], "dilations": [2, 3],
                     "ceil_mode": 1, "strides": [2, 1], "count_include_pad": 1}, 8),
    ("GlobalAveragePool", {}, 8),
    ("GlobalMaxPool", {}, 16),
]


@pytest.mark.parametrize("kind,attrs,c", POOLS)
def test_pool_blocked_equals_nchw(kind, attrs, c):
    x = rand(2, 48, 14, 14)
    want, got, ref_g, blk_g = _nchw_vs_blocked(kind, x, c, attrs)
    assert got.shape == want.shape and np.array_equal(got, want)
    pool = blk_g.ops[1]
    assert pool.output.type.shape == (2, 48 // c) + want.shape[2:] + (c,)
    assert count_flops(pool) == count_flops(ref_g.ops[0])


def test_max_pool_blocked_int8():
    x = RNG.integers(-128, 127, (1, 16, 6, 6)).astype(np.int8)
    want, got, _, _ = _nchw_vs_blocked("MaxPool", x, 8, {"kernel_shape": [2, 2]})
    assert got.dtype == np.int8 and np.array_equal(got, want)


def test_nchw_ops_keep_their_attrs_and_types():
    conv = build_op("Conv", [V("x", 1, 3, 8, 8), V("w", 4, 3, 3, 3)], {})
    assert conv.attrs["layout"] == NCHW and conv.output.type.shape == (1, 4, 6, 6)
    pool = build_op("GlobalMaxPool", [V("x", 1, 3, 8, 8, 2)], {})   # 3-D NCHW stays legal
    assert pool.output.type.shape == (1, 3, 1, 1, 1)


# ---- verifier errors --------------------------------------------------------------------------

B8 = "NCHW8c"
CONV_ERRORS = [
    ([V("x", 1, 32, 8, 8), V("w", 2, 4, 3, 3, 8, 8)], {"layout": B8},
     r"Conv: layout NCHW8c needs X of rank 5 \[N,C/8,H,W,8\] \(2-D spatial only\), "
     r"got \[1,32,8,8\]"),
    ([V("x", 1, 4, 8, 8, 8, 8), V("w", 2, 4, 3, 3, 8, 8)], {"layout": B8},
     "Conv: layout NCHW8c needs X of rank 5"),
    ([V("x", 1, 2, 8, 8, 16), V("w", 2, 4, 3, 3, 8, 8)], {"layout": B8},
     r"Conv: layout NCHW8c needs the last axis of X to be 8, got \[1,2,8,8,16\]"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 16, 32, 3, 3)], {"layout": B8},
     r"Conv: layout NCHW8c needs a 6-D W \[M/8,C/8,kh,kw,8,8\]"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 4, 3, 3, 8, 16)], {"layout": B8},
     "needs a 6-D W"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 2, 3, 3, 8, 8)], {"layout": B8, "group": 2},
     r"Conv: layout NCHW8c supports group=1 and depthwise convolutions \(group = C = M\) "
     r"only; got group=2 with C=32, M=16"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 1, 3, 3, 1, 8)], {"layout": B8, "group": 32},
     r"got group=32 with C=32, M=16"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 3, 3, 3, 8, 8)], {"layout": B8},
     r"Conv: W \[2,3,3,3,8,8\] does not fit X \[1,4,8,8,8\] with group=1 in layout NCHW8c; "
     r"expected \[2,4,3,3,8,8\]"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 4, 1, 3, 3, 8, 8)], {"layout": B8, "group": 32},
     r"expected \[4,1,3,3,1,8\]"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 4, 3, 3, 8, 8), V("b", 2)], {"layout": B8},
     r"Conv: B must have shape \[16\], got \[2\]"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 4, 3, 3, 8, 8)], {"layout": B8, "kernel_shape": [3, 1]},
     r"kernel_shape=\[3, 1\] does not match W \[2,4,3,3,8,8\]"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 4, 3, 3, 8, 8)], {"layout": B8, "strides": [1, 1, 1]},
     "strides=.* must have 2 entries"),
    ([V("x", 1, 4, 2, 2, 8), V("w", 2, 4, 3, 3, 8, 8)], {"layout": B8},
     r"Conv: output size would be \[0,0\]"),
    ([V("x", 1, 32, 8, 8), V("w", 4, 32, 3, 3)], {"layout": "NHWC"},
     r"Conv: attribute layout='NHWC' must be 'NCHW' or 'NCHW\{c\}c'"),
    ([V("x", 1, 4, 8, 8, 8), V("w", 2, 4, 3, 3, 8, 8, dtype="f64")], {"layout": B8},
     "Conv: W is f64 but X is f32"),
]


@pytest.mark.parametrize("inputs,attrs,message", CONV_ERRORS)
def test_blocked_conv_errors(inputs, attrs, message):
    with pytest.raises(OpRuleError, match=message):
        build_op("Conv", inputs, attrs)


@pytest.mark.parametrize("kind,shape,attrs,message", [
    ("MaxPool", (1, 32, 8, 8), {"kernel_shape": [2, 2]},
     "MaxPool: layout NCHW8c needs X of rank 5"),
    ("AveragePool", (1, 4, 8, 8, 4), {"kernel_shape": [2, 2]},
     "AveragePool: layout NCHW8c needs the last axis of X to be 8"),
    ("MaxPool", (1, 4, 8, 8, 8), {"kernel_shape": [2, 2, 2]},
     r"kernel_shape=\[2, 2, 2\] must have 2 entries"),
    ("AveragePool", (1, 4, 8, 8, 8), {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]},
     "pads=.* must be smaller than the kernel size"),
    ("GlobalAveragePool", (1, 4, 8, 8, 8, 8), {},
     "GlobalAveragePool: layout NCHW8c needs X of rank 5"),
    ("GlobalMaxPool", (1, 4, 8, 8, 16), {}, "GlobalMaxPool: layout NCHW8c needs the last axis"),
])
def test_blocked_pool_errors(kind, shape, attrs, message):
    with pytest.raises(OpRuleError, match=message):
        build_op(kind, [V("x", *shape)], {**attrs, "layout": B8})


def test_verifier_names_the_node():
    text = """graph @t(%x: f32[1,4,8,8,8]) -> (%y: f32[1,2,6,6,8]) {
  params {
    %w: f32[2,2,3,3,8,8]
  }
  %y = Conv(%x, %w) {layout="NCHW8c"} : f32[1,2,6,6,8] loc("conv7")
  return %y
}
"""
    with pytest.raises(ModelError, match=r"t\.eir:5:\d+: node 'conv7' \(Conv\): Conv: W "
                                         r"\[2,2,3,3,8,8\] does not fit X"):
        parse_graph(text, "t.eir")


# ---- a whole blocked graph: text IR and ONNX export --------------------------------------------

def blocked_net(c=8, w_as_param=True):
    """x NCHW -> blocked conv+bias -> Relu -> MaxPool -> depthwise conv -> AveragePool ->
    1x1 conv -> GlobalAveragePool -> NCHW; the blocked 1x1 conv result is a second output."""
    g = Builder("blocked_net")
    x = g.to_blocked(g.input("x", rand(1, 32, 14, 14)), c)
    w1 = g.operand("w1", block_conv_weight(rand(48, 32, 3, 3), c, False),
                 w_as_param)
    y = g.op("Conv", [x, w1, g.param("b1", rand(48))], pads=[1, 1, 1, 1], layout=f"NCHW{c}c")
    y = g.op("Relu", [y])
    y = g.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             layout=f"NCHW{c}c")
    y = g.op("Conv", [y, g.param("wd", block_conv_weight(rand(48, 1, 3, 3), c, True))],
             group=48, pads=[1, 1, 1, 1], layout=f"NCHW{c}c")
    y = g.op("AveragePool", [y], kernel_shape=[2, 2], strides=[2, 2], count_include_pad=1,
             layout=f"NCHW{c}c")
    z = g.op("Conv", [y, g.param("w2", block_conv_weight(rand(64, 48, 1, 1), c, False))],
             name="pw", layout=f"NCHW{c}c")
    p = g.op("GlobalAveragePool", [z], layout=f"NCHW{c}c")
    return g.ret(g.to_nchw(p), z), g.feeds


def nchw_net(blocked: Graph):
    """The same network with every op in NCHW (weights unblocked, conversions dropped)."""
    g = Builder("nchw_net")
    env = {}
    for v in blocked.inputs:
        env[v] = g.input(v.name, np.zeros(v.type.shape, v.type.np_dtype))
    for p in blocked.params:
        env[p] = g.param(p.name, unblock_conv_weight(p.data) if p.data.ndim == 6 else p.data)
    for op in blocked.ops:
        if op.kind == "LayoutTransform":
            env[op.output] = env[op.inputs[0]]
            continue
        attrs = {k: v for k, v in op.attrs.items() if k != "layout"}
        env[op.output] = g.op(op.kind, [None if v is None else env[v] for v in op.inputs],
                              name=op.name, **attrs)
    return g.ret(*(env[v] for v in blocked.outputs))


@pytest.mark.parametrize("c", [8, 16])
def test_blocked_net_equals_nchw_net(c):
    graph, feeds = blocked_net(c)
    got = run_graph(graph, feeds)
    want = run_graph(nchw_net(graph), feeds)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(unblock_nchw(got[1]), want[1])


def test_text_ir_round_trip():
    graph, feeds = blocked_net(8)
    text = print_graph(graph)
    assert 'LayoutTransform(%x) {dst_layout="NCHW8c", src_layout="NCHW"} : f32[1,4,14,14,8]' \
        in text
    assert 'group=48, kernel_shape=[3,3], layout="NCHW8c", pads=[1,1,1,1]' in text
    assert 'GlobalAveragePool(%pw) {layout="NCHW8c"} : f32[1,8,1,1,8]' in text
    weights = {p.name: p.data for p in graph.params}
    again = parse_graph(text, "t.eir", weights)
    assert print_graph(again) == text
    for a, b in zip(run_graph(graph, feeds), run_graph(again, feeds)):
        assert np.array_equal(a, b)


def test_text_ir_omits_only_the_default_layout():
    nchw = nchw_net(blocked_net(8)[0])
    text = print_graph(nchw)
    assert "layout" not in text
    assert "GlobalAveragePool(%pw) : f32[1,64,1,1]" in text
    assert "Conv(%x, %w1, %b1) {dilations=[1,1], group=1, kernel_shape=[3,3], " \
           "pads=[1,1,1,1], strides=[1,1]}" in text
    assert print_graph(parse_graph(text, weights={p.name: p.data for p in nchw.params})) == text
    explicit = parse_graph(text.replace("GlobalAveragePool(%pw)",
                                        'GlobalAveragePool(%pw) {layout="NCHW"}'),
                           weights={p.name: p.data for p in nchw.params})
    assert print_graph(explicit) == text


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("w_as_param", [True, False])
def test_onnx_export_runs_in_onnxruntime(opset, w_as_param):
    graph, feeds = blocked_net(8, w_as_param)
    model = export_onnx(graph, opset)
    onnx.checker.check_model(model, full_check=True)
    kinds = [n.op_type for n in model.graph.node]
    assert "LayoutTransform" not in kinds and kinds.count("Conv") == 3
    assert not any(a.name == "layout" for n in model.graph.node for a in n.attribute)
    want = run_graph(graph, feeds)
    got = ort_run(model, feeds)
    assert [o.name for o in model.graph.output] == [v.name for v in graph.outputs]
    for w, o in zip(want, got):
        assert w.shape == o.shape and rel_err(w, o) <= 1e-5


def test_onnx_export_of_nchw_ops_has_no_layout_attr():
    graph = nchw_net(blocked_net(8)[0])
    model = export_onnx(graph, 17)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == [op.kind for op in graph.ops]
    assert not any(a.name == "layout" for n in model.graph.node for a in n.attribute)


# ---- passes that rewrite Conv weights or pads --------------------------------------------------

def _blocked_conv_graph(before=None, after=None, c=8):
    """x [1,32,10,10] blocked -> (before) -> Conv(layout NCHW{c}c) -> (after) -> NCHW."""
    g = Builder()
    x = g.input("x", rand(1, 32 // c, 10, 10, c))
    if before:
        x = before(g, x)
    w6 = block_conv_weight(rand(16, 32, 3, 3), c, False)
    y = g.op("Conv", [x, g.param("w", w6), g.param("b", rand(16))], name="conv",
             layout=f"NCHW{c}c")
    if after:
        y = after(g, y)
    return g.ret(y), g.feeds


def _run_pass(p, graph, feeds):
    want = run_graph(graph, feeds)
    ctx = PassContext()
    g = graph.clone()
    changed = p.run(g, ctx)
    verify_graph(g)
    for a, b in zip(want, run_graph(g, feeds)):
        assert np.array_equal(a, b)
    return g, changed, getattr(ctx, "refusals", [])


@pytest.mark.parametrize("const_shape", [(), (1, 2, 1, 1, 8)])
def test_fuse_conv_bn_refuses_blocked_conv(const_shape):
    graph, feeds = _blocked_conv_graph(after=lambda g, y: g.op(
        "Mul", [y, g.param("s", rand(*const_shape))], name="scale"))
    g, changed, refusals = _run_pass(FuseConvBN(), graph, feeds)
    assert not changed and [op.kind for op in g.ops] == ["Conv", "Mul"]
    assert refusals == [("fuse-conv-bn", "node 'scale' (Mul)",
                         "node 'conv' (Conv) uses the blocked layout NCHW8c (6-D weights, not "
                         "folded; run fuse-conv-bn before convert-layout)")]


def test_fold_affine_into_conv_refuses_blocked_conv():
    graph, feeds = _blocked_conv_graph(before=lambda g, x: g.op(
        "Mul", [x, g.param("s", np.float32(0.5))], name="scale"))
    g, changed, refusals = _run_pass(FoldAffineIntoConv(), graph, feeds)
    assert not changed and [op.kind for op in g.ops] == ["Mul", "Conv"]
    assert len(refusals) == 1 and refusals[0][:2] == ("fold-affine-into-conv",
                                                      "node 'conv' (Conv)")
    assert "uses the blocked layout NCHW8c" in refusals[0][2]


def test_fold_pad_folds_into_blocked_conv_and_pools():
    g = Builder()
    x = g.input("x", rand(1, 4, 10, 10, 8))
    p0 = g.op("Pad", [x], pads=[0, 0, 1, 2, 0, 0, 0, 1, 1, 0])
    w6 = block_conv_weight(rand(16, 32, 3, 3), 8, False)
    c = g.op("Conv", [p0, g.param("w", w6)], name="c", pads=[1, 1, 1, 1], layout="NCHW8c")
    pinf = g.op("Pad", [x], pads=[0, 0, 1, 1, 0, 0, 0, 1, 1, 0], value=float("-inf"))
    m = g.op("MaxPool", [pinf], name="m", kernel_shape=[3, 3], layout="NCHW8c")
    pz = g.op("Pad", [x], pads=[0, 0, 1, 1, 0, 0, 0, 1, 1, 0])
    a = g.op("AveragePool", [pz], name="a", kernel_shape=[3, 3], strides=[2, 2],
             layout="NCHW8c")
    graph = g.ret(c, m, a)
    out, changed, refusals = _run_pass(FoldPad(), graph, g.feeds)
    assert changed and not refusals and "Pad" not in [op.kind for op in out.ops]
    conv, mp, ap = out.ops
    assert conv.attrs["pads"] == [2, 3, 2, 2] and conv.attrs["layout"] == Layout(8)
    assert mp.attrs["pads"] == [1, 1, 1, 1]
    assert ap.attrs["pads"] == [1, 1, 1, 1] and ap.attrs["count_include_pad"] == 1


def test_fold_pad_refuses_a_pad_of_the_lanes_axis():
    pad = [0, 0, 1, 1, 1, 0, 0, 1, 1, 0]         # pads axis 4 (channels within a block)
    g = Builder()
    x = g.input("x", rand(1, 4, 6, 6, 7))
    p = g.op("Pad", [x], pads=pad)
    y = g.op("MaxPool", [p], name="m", kernel_shape=[2, 2], layout="NCHW8c")
    graph = g.ret(y)
    out, changed, refusals = _run_pass(FoldPad(), graph, g.feeds)
    assert not changed and [op.kind for op in out.ops] == ["Pad", "MaxPool"]
    assert refusals and "Pad pads the batch or channel axis" in refusals[0][2]
