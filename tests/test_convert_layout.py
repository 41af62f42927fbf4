"""convert-layout: which ops run blocked, how many conversions, refusals, and exact numerics
on real models (the pass is bit-exact: tolerance 0)."""
from __future__ import annotations

import numpy as np
import pytest

from edgecc import zoo
from edgecc.errors import UsageError
from edgecc.kernels import run_graph
from edgecc.onnx_import import import_onnx
from edgecc.ops import verify_graph
from edgecc.pass_manager import PassContext, PassManager, pipeline
from edgecc.passes.convert_layout import ConvertLayout, macs

from test_passes import G, apply, conv, feeds_for
from tests.targets import ARM64, AVX2, AVX512


def transforms(graph):
    return [op for op in graph.ops if op.kind == "LayoutTransform"]


def layouts(graph, kind):
    return [str(op.attrs["layout"]) for op in graph.ops if op.kind == kind]


def test_residual_block_runs_blocked_with_two_conversions():
    g = G(x=(1, 16, 10, 10))
    a = g.op("Relu", [conv(g, g.x, 32, name="c1")])
    p = g.op("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    s = g.op("Add", [g.op("Relu", [conv(g, p, 32, k=1, name="c2")]), p])
    shift = g.op("Mul", [s, g.rand(1, 32, 1, 1, name="scale")])
    out = g.op("Flatten", [g.op("GlobalAveragePool", [shift])])
    graph = g.ret(out)
    new, changed, _ = apply(ConvertLayout(block=16), graph, rtol=0.0)
    assert changed
    assert layouts(new, "Conv") == ["NCHW16c", "NCHW16c"]
    assert layouts(new, "MaxPool") == ["NCHW16c"]
    assert layouts(new, "GlobalAveragePool") == ["NCHW16c"]
    ts = transforms(new)
    assert [(str(t.attrs["src_layout"]), str(t.attrs["dst_layout"])) for t in ts] == [("NCHW", "NCHW16c")]
    assert ts[0].inputs[0] is new.inputs[0]                   # the graph input, converted once
    # only the pooled vector leaves the region: [1, 2, 1, 1, 16] is [1, 32, 1, 1] as bytes
    flatten = next(op for op in new.ops if op.kind == "Flatten")
    assert flatten.inputs[0].producer.kind == "Reshape"
    assert flatten.inputs[0].type.shape == (1, 32, 1, 1)
    scale = next(p for p in new.params if p.name.startswith("scale"))
    assert scale.type.shape == (1, 2, 1, 1, 16)               # per-channel constant re-blocked
    assert [v.name for v in new.outputs] == [v.name for v in graph.outputs]


def test_lrn_between_convs_stays_in_the_region():
    g = G(x=(1, 16, 9, 9))
    y = g.op("LRN", [g.op("Relu", [conv(g, g.x, 32, name="c1")])], size=5, alpha=1e-3,
             beta=0.75, bias=2.0)
    new, _, _ = apply(ConvertLayout(block=16), g.ret(conv(g, y, 32, name="c2")), rtol=0.0)
    assert layouts(new, "LRN") == ["NCHW16c"]
    assert len(transforms(new)) == 2                          # graph input and output only


@pytest.mark.parametrize("block,want", [(16, ["NCHW", "NCHW"]), (8, ["NCHW8c", "NCHW8c"])])
def test_block_is_whole_vectors_and_must_divide_the_channels(block, want):
    g = G(x=(1, 24, 8, 8))
    y = g.op("Relu", [conv(g, g.x, 40, name="c1")])
    new, _, refusals = apply(ConvertLayout(block=block), g.ret(conv(g, y, 24, name="c2")),
                             rtol=0.0)
    assert layouts(new, "Conv") == want
    assert not refusals if block == 8 else \
        any("channels 24 -> 40 are not multiples of 16" in r for _, _, r in refusals)


def test_depthwise_and_dense_convs_block_and_grouped_are_refused():
    g = G(x=(1, 32, 12, 12))
    d = conv(g, g.x, 32, name="dw", group=32)
    e = conv(g, d, 64, name="dense")
    graph = g.ret(conv(g, e, 64, name="grouped", group=4))
    new, _, refusals = apply(ConvertLayout(block=8), graph, rtol=0.0)
    assert layouts(new, "Conv") == ["NCHW8c", "NCHW8c", "NCHW"]
    assert any("grouped convolution (group=4)" in r for _, _, r in refusals)
    blocked_dw = new.ops[1]
    assert blocked_dw.inputs[1].type.shape == (4, 1, 3, 3, 1, 8)


def test_unprofitable_region_is_refused_with_its_work_ratio():
    # a lone depthwise conv between NCHW neighbours: 9 multiply-adds per element, 2 conversions
    g = G(x=(1, 32, 16, 16))
    y = g.op("Transpose", [conv(g, g.x, 32, name="dw", group=32)], perm=[0, 1, 3, 2])
    graph = g.ret(y)
    new, changed, refusals = apply(ConvertLayout(block=16), graph, rtol=0.0)
    assert not changed and not transforms(new)
    assert any("multiply-adds per converted element" in r for _, _, r in refusals)


def test_stem_conv_reads_its_nchw_input_as_a_view():
    g = G(x=(1, 3, 16, 16))
    y = g.op("MaxPool", [g.op("Relu", [conv(g, g.x, 32, name="stem", strides=[2, 2])])],
             kernel_shape=[2, 2], strides=[2, 2])
    new, _, _ = apply(ConvertLayout(block=16), g.ret(conv(g, y, 32, name="c2")), rtol=0.0)
    assert layouts(new, "Conv") == ["NCHW16c", "NCHW16c"]
    view = new.ops[0]
    assert (view.kind, view.output.type.shape) == ("Reshape", (1, 3, 16, 16, 1))
    assert new.ops[1].inputs[1].type.shape == (2, 3, 3, 3, 1, 16)
    assert [(str(t.attrs["src_layout"]), str(t.attrs["dst_layout"])) for t in transforms(new)] == \
        [("NCHW16c", "NCHW")]                         # the graph output only


def test_channels_not_in_whole_blocks_stay_nchw():
    g = G(x=(1, 3, 16, 16))
    graph = g.ret(conv(g, g.x, 6, name="stem"))
    new, changed, refusals = apply(ConvertLayout(block=16), graph, rtol=0.0)
    assert not changed
    assert any("channels 3 -> 6 are not multiples of 16" in r for _, _, r in refusals)


def test_output_channels_padded_to_whole_blocks_when_cheap():
    """120 output channels run as 128 (1/15 more work): the Relu, the per-channel divisor
    (padded with its last value) and the pool run blocked too, and a Slice drops the extra
    channels of the pooled [1, 128] before the Softmax. Not padded: 40 -> 48 (1/5 more
    work), and 120 channels whose Slice would copy a whole map (before the Transpose)."""
    g = G(x=(1, 32, 8, 8))
    y = g.op("Relu", [conv(g, conv(g, g.x, 32, name="c0"), 120, name="c1")])
    y = g.op("Div", [y, g.rand(1, 120, 1, 1, name="d", lo=1, hi=2)])
    s = g.op("Softmax", [g.op("Reshape", [g.op("GlobalAveragePool", [y])], shape=[1, 120])],
             axis=1)
    narrow = conv(g, conv(g, g.x, 32, name="c2"), 40, name="c3")
    mixed = g.op("Transpose", [conv(g, conv(g, g.x, 32, name="c4"), 120, name="c5")],
                 perm=[0, 1, 3, 2])
    new, _, refusals = apply(ConvertLayout(block=16), g.ret(s, narrow, mixed), rtol=0.0)
    by_name = {op.name: op for op in new.ops}
    assert [str(by_name[f"c{i}"].attrs["layout"]) for i in range(6)] == \
        ["NCHW16c"] * 3 + ["NCHW", "NCHW16c", "NCHW"]
    assert by_name["c1"].inputs[1].type.shape == (8, 2, 3, 3, 16, 16)      # 128 channels
    assert layouts(new, "GlobalAveragePool") == ["NCHW16c"]
    cut, = [op for op in new.ops if op.kind == "Slice"]
    assert cut.inputs[0].type.shape == (1, 128) and cut.output.type.shape == (1, 120)
    assert next(op for op in new.ops if op.kind == "Softmax").inputs[0] is cut.output
    for ch in (40, 120):
        assert any(f"channels 32 -> {ch} are not multiples of 16" in r for _, _, r in refusals)


def test_padding_is_undone_when_its_region_is_refused():
    # a lone 1x1 conv: 32 multiply-adds per output element, too few for its two conversions
    g = G(x=(1, 32, 8, 8))
    graph = g.ret(g.op("Relu", [conv(g, g.x, 120, k=1, name="c1")]))
    new, changed, refusals = apply(ConvertLayout(block=16), graph, rtol=0.0)
    assert not changed
    assert [op.kind for op in new.ops] == ["Conv", "Relu"]
    assert new.ops[0].output.type.shape == (1, 120, 8, 8)
    assert any("channels 32 -> 120 are not multiples of 16" in r for _, _, r in refusals)


@pytest.mark.parametrize("flatten", ["Flatten", "Reshape"])
def test_classifier_reads_the_blocked_flatten_with_permuted_weights(flatten):
    g = G(x=(1, 16, 6, 6))
    y = g.op("MaxPool", [g.op("Relu", [conv(g, g.x, 32, name="c1")])], kernel_shape=[2, 2],
             strides=[2, 2])
    f = g.op("Flatten", [y], axis=1) if flatten == "Flatten" else \
        g.op("Reshape", [y], shape=[1, 288])
    a = g.op("Gemm", [f, g.rand(10, 288, name="fc"), g.rand(10, name="fcb")], transB=1)
    b = g.op("MatMul", [f, g.rand(288, 7, name="mm")])
    new, _, _ = apply(ConvertLayout(block=16), g.ret(a, b), rtol=1e-6)
    assert [(str(t.attrs["src_layout"]), str(t.attrs["dst_layout"])) for t in transforms(new)] == \
        [("NCHW", "NCHW16c")]                       # nothing converts back
    flat = next(op for op in new.ops if op.kind == flatten)
    assert flat.inputs[0].type.shape == (1, 2, 3, 3, 16)


def test_convert_layout_needs_a_target_or_a_block():
    """A pass never reads the machine it runs on: without a target (or an explicit block)
    convert-layout refuses to guess the vector width."""
    g = G(x=(1, 16, 10, 10))
    graph = g.ret(g.op("Relu", [conv(g, g.x, 32, name="c1")]))
    with pytest.raises(UsageError, match="convert-layout.*has no target"):
        ConvertLayout().run(graph.clone(), PassContext())
    assert ConvertLayout().run(graph.clone(), PassContext(target=AVX2))
    assert ConvertLayout(block=16).run(graph.clone(), PassContext())


def test_is_in_the_O3_pipeline_only():
    names = lambda lvl: [p.name for p in pipeline(lvl)]  # noqa: E731
    assert "convert-layout" in names(3)
    assert "convert-layout" not in names(2)
    assert names(3).index("convert-layout") < names(3).index("fuse-kernels")


@pytest.mark.parametrize("name,target", [("squeezenet", AVX512), ("ppocr_cls", AVX2),
                                         ("squeezenet", ARM64)],
                         ids=["squeezenet-avx512", "ppocr_cls-avx2", "squeezenet-neon"])
def test_real_models_block_with_few_conversions_and_exact_outputs(zoo_source, name, target):
    """The pass blocks by the f32 lanes of the target it is given (16, 8, 4)."""
    lanes = target.lanes()
    graph = import_onnx(str(zoo_source(name)), zoo.default_input_shapes(name))
    passes = [p for p in pipeline(3) if p.name not in ("convert-layout", "fuse-kernels")]
    graph = PassManager(passes).run(graph)
    feeds = feeds_for(graph)
    want = run_graph(graph, feeds)
    ctx = PassContext(target=target)
    assert ConvertLayout().run(graph, ctx)
    verify_graph(graph)
    convs = [op for op in graph.ops if op.kind == "Conv"]
    blocked = sum(macs(op) for op in convs if op.attrs["layout"].is_blocked)
    # all but the stem and SE blocks; squeezenet's 1000-class conv is padded to 1008 for
    # c=16 (whole blocks as it is for c=4)
    assert blocked >= (0.99 if name == "squeezenet" else 0.6) * sum(macs(op) for op in convs)
    if name == "squeezenet":     # 1000 classes: 1008 for c=16, whole blocks for c=4
        assert any(op.kind == "Slice" for op in graph.ops) == (lanes == 16)
    refused = {d for _, d, _ in ctx.refusals}
    assert all(op.describe() in refused for op in convs if not op.attrs["layout"].is_blocked)
    assert len(transforms(graph)) <= 3
    for a, b in zip(want, run_graph(graph, feeds)):
        np.testing.assert_array_equal(a, b)
