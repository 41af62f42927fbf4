"""TVM lowering and default schedules of the blocked layout NCHW{c}c: blocked Conv (group 1 and
depthwise; 1x1, 3x3, strided, dilated, asymmetric pads, widths that are not a multiple of the
register tile), pools, LayoutTransform, and the fused epilogue (bias, Relu, residual Add) -
each kernel against the reference executor, with the blocked rule applied (no fallback).
One arm64 (c = 4, NEON) compile test."""
from __future__ import annotations

import numpy as np
import pytest

from edgecc.backends.tvm import primitives as tvm_schedule
from edgecc.backends.tvm.build import KernelSet, run_kernels_in_tvm
from edgecc.backends.tvm.schedule_conv_blocked import blocked_tile, depthwise_rows
from edgecc.backends.tvm.lower import lower_kernel
from edgecc.kernels.executor import run_graph
from edgecc.ops.layout import block_conv_weight, block_nchw
from edgecc.ops import build_op
from edgecc.builder import GraphBuilder
from tests.graphs import one_op_graph
from tests.targets import ARM64, AVX2, AVX512, FAST, runnable

RNG = np.random.default_rng(11)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def conv(c, cin, cout, hw, k, stride=1, pads=None, dil=1, depthwise=False, bias=True):
    """A blocked Conv case: (kind, arrays, attrs, param positions)."""
    h, w = hw if isinstance(hw, tuple) else (hw, hw)
    pads = [k // 2 * dil] * 4 if pads is None else pads
    x = block_nchw(randn(1, cin, h, w), c)
    wt = block_conv_weight(randn(cout, 1 if depthwise else cin, k, k), c, depthwise)
    arrays = [x, wt] + ([randn(cout)] if bias else [])
    attrs = {"strides": [stride] * 2, "pads": pads, "dilations": [dil] * 2,
             "group": cin if depthwise else 1, "layout": f"NCHW{c}c"}
    return "Conv", arrays, attrs, (1, 2)


def check(graph, feeds, target=FAST, tol=1e-4):
    tvm_schedule.FALLBACKS.clear()
    got = run_kernels_in_tvm(graph, feeds, target)
    assert tvm_schedule.FALLBACKS == []
    for v, r, o in zip(graph.outputs, run_graph(graph, feeds), got):
        scale = max(1.0, float(np.max(np.abs(r))))
        err = float(np.max(np.abs(r.astype(np.float64) - o)))
        assert o.shape == r.shape and err <= tol * scale, (v.producer.name, err)


CONVS = [conv(16, 32, 48, 7, 1),                             # 1x1, 3 blocks: T 7 x NB 3
         conv(16, 32, 32, 13, 3),                            # 3x3, 13-wide rows
         conv(8, 16, 24, (15, 11), 3, stride=2),             # strided 3x3
         conv(16, 32, 32, 14, 1, stride=2, pads=[0] * 4, bias=False),   # strided 1x1
         conv(4, 8, 12, (10, 17), 3, pads=[0, 1, 2, 1], dil=2),         # asymmetric, dilated
         conv(16, 16, 64, (5, 17), 3),                       # 17 columns: rounded-up row
         conv(16, 16, 64, (5, 17), 1, bias=False)]           # ... cropped without a bias
DEPTHWISE = [conv(16, 32, 32, 12, 3, depthwise=True),
             conv(8, 24, 24, 13, 5, stride=2, depthwise=True, bias=False),
             conv(4, 8, 8, (9, 30), 3, pads=[1, 0, 0, 2], depthwise=True)]


@runnable
def test_blocked_conv(target):
    check(*one_op_graph(CONVS), target)


@runnable
def test_blocked_depthwise_conv(target):
    check(*one_op_graph(DEPTHWISE), target)


def test_blocked_conv_fused_epilogue():
    """Conv (bias) + Relu + residual Add of another blocked tensor + a per-channel scale as
    one Fused kernel, computed per register tile by the blocked conv rule; the Relu result
    is also a graph output (a second result of the kernel, downstream of the first)."""
    from edgecc.pass_manager import PassManager, parse_pass
    _, (x, wt, b), attrs, _ = conv(16, 32, 48, 9, 3)
    bld = GraphBuilder("fused_blocked")
    g, feeds = bld.graph, bld.feeds
    xv = bld.input("x", x)
    rv = bld.input("r", randn(1, 3, 9, 9, 16))
    c = build_op("Conv", [xv, g.add_param("w", wt), g.add_param("b", b)], attrs)
    a = build_op("Relu", [c.output], {})
    s = build_op("Add", [a.output, rv], {})
    m = build_op("Mul", [s.output, g.add_param("scale", randn(1, 3, 1, 1, 16))], {})
    g.ops = [c, a, s, m]
    g.outputs = [a.output, m.output]
    fused = PassManager([parse_pass("fuse-kernels")]).run(g)
    assert [op.kind for op in fused.ops] == ["Fused"]
    script = lower_kernel(fused.ops[0], "k", AVX512).script()
    # the padded input first, then one parallel loop nest: every epilogue stage is
    # computed inside the conv's tasks
    top = [ln for ln in script.splitlines() if ln.startswith("    for ")]
    assert len(top) == 2 and "T.parallel" in top[1] and "T.vectorized" in script
    check(fused, feeds)


def test_blocked_conv_reads_nchw_through_a_layout_transform():
    """A Fused [LayoutTransform, Conv] kernel (the input blocked on the fly while padding
    each task's rows; and for an unpadded 1x1 conv, read in place) and a chain blocked c=8
    -> NCHW -> c=16."""
    bld = GraphBuilder("prologue")
    g, feeds = bld.graph, bld.feeds
    outs = []
    for i, (k, src) in enumerate([(3, None), (1, None), (3, 8)]):
        x = bld.operand(f"x{i}", randn(1, 32, 10, 10) if src is None else
                    block_nchw(randn(1, 32, 10, 10), src), False)
        v = x
        if src is not None:
            t0 = build_op("LayoutTransform", [v], {"src_layout": f"NCHW{src}c",
                                                   "dst_layout": "NCHW"}, name=f"u{i}")
            g.ops.append(t0)
            v = t0.output
        t = build_op("LayoutTransform", [v], {"src_layout": "NCHW", "dst_layout": "NCHW16c"},
                     name=f"t{i}")
        _, (_, wt, b), attrs, _ = conv(16, 32, 32, 10, k)
        cv = build_op("Conv", [t.output, g.add_param(f"w{i}", wt), g.add_param(f"b{i}", b)],
                      attrs, name=f"conv{i}")
        g.ops += [t, cv]
        outs.append(cv.output)
    g.outputs = outs
    from edgecc.pass_manager import PassManager, parse_pass
    fused = PassManager([parse_pass("fuse-kernels")]).run(g)
    kinds = [[o.kind for o in op.attrs["body"].ops] for op in fused.ops if op.kind == "Fused"]
    assert ["LayoutTransform", "Conv"] in kinds
    check(fused, feeds)


@pytest.mark.parametrize("hw,k", [(13, 1), (16, 1), (9, 3)])
def test_nchw_conv_reads_a_blocked_input_through_its_unblocking(hw, k):
    """Fused [LayoutTransform to NCHW, Conv (NCHW)]: squeezenet's 1000-class conv reads the
    blocked concat; the conversion happens while each task copies its input rows (also for
    a 1x1 conv on a 16x16 plane, which otherwise reads its input in place)."""
    bld = GraphBuilder("unblock")
    g, feeds = bld.graph, bld.feeds
    x = bld.operand("x", block_nchw(randn(1, 32, hw, hw), 16), False)
    t = build_op("LayoutTransform", [x], {"src_layout": "NCHW16c", "dst_layout": "NCHW"},
                 name="u")
    w = g.add_param("w", randn(40, 32, k, k))
    cv = build_op("Conv", [t.output, w], {"pads": [k // 2] * 4}, name="conv")
    r = build_op("Relu", [cv.output], name="relu")
    g.ops += [t, cv, r]
    g.outputs = [r.output]
    from edgecc.pass_manager import PassManager, parse_pass
    fused = PassManager([parse_pass("fuse-kernels")]).run(g)
    assert [[o.kind for o in op.attrs["body"].ops] for op in fused.ops] == \
        [["LayoutTransform", "Conv", "Relu"]]
    check(fused, feeds)


@pytest.mark.parametrize("k,order", [(3, (0, 1, 2, 3)), (7, (1, 2, 0, 3))])
def test_blocked_conv_reads_an_nchw_input_as_one_lane_blocks(k, order):
    """A stem conv (3 input channels) writes blocked output from its NCHW input viewed as
    [N, C, H, W, 1], with weights [M/c, C, kh, kw, 1, c]; with 7x7 taps (resnet50's and
    inception's stems) the taps loop outside the 3 channels (1.2x faster)."""
    from edgecc.backends.tune.search import traced
    from edgecc.backends.tvm.lower import kernel_prim_func
    bld = GraphBuilder("stem")
    g, feeds = bld.graph, bld.feeds
    x = bld.operand("x", randn(1, 3, 17, 17), False)
    view = build_op("Reshape", [x], {"shape": [1, 3, 17, 17, 1]}, name="view")
    w = block_conv_weight(randn(32, 3, k, k), 16, False, ci=1)
    cv = build_op("Conv", [view.output, g.add_param("w", w), g.add_param("b", randn(32))],
                  {"pads": [k // 2] * 4, "strides": [2, 2], "layout": "NCHW16c"}, name="stem")
    assert cv.output.type.shape == (1, 2, 9, 9, 16)
    g.ops += [view, cv]
    g.outputs = [cv.output]
    check(g, feeds)
    _, knobs = traced(kernel_prim_func(cv, AVX512), cv, AVX512)
    assert knobs["blocked.order"][0] == order


POOLS = [("MaxPool", [block_nchw(randn(1, 32, 15, 15), 16)],
          {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4, "layout": "NCHW16c"}, ()),
         ("MaxPool", [block_nchw(randn(2, 8, 9, 10), 4)],
          {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "layout": "NCHW4c"}, ()),
         ("AveragePool", [block_nchw(randn(1, 16, 7, 9), 8)],
          {"kernel_shape": [3, 3], "pads": [1] * 4, "layout": "NCHW8c"}, ()),
         ("AveragePool", [block_nchw(randn(1, 32, 8, 8), 16)],
          {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1],
           "count_include_pad": 1, "layout": "NCHW16c"}, ()),
         ("GlobalAveragePool", [block_nchw(randn(1, 64, 7, 7), 16)], {"layout": "NCHW16c"}, ()),
         ("GlobalMaxPool", [block_nchw(randn(2, 12, 5, 6), 4)], {"layout": "NCHW4c"}, ()),
         # LRN's window crosses block boundaries (channels 14..18 span blocks 0 and 1)
         ("LRN", [block_nchw(randn(1, 32, 6, 7), 16)],
          {"size": 5, "alpha": 1e-2, "beta": 0.75, "bias": 1.5, "layout": "NCHW16c"}, ()),
         ("LRN", [block_nchw(randn(1, 12, 5, 5), 4)],
          {"size": 4, "alpha": 1e-3, "beta": 0.6, "bias": 1.0, "layout": "NCHW4c"}, ())]


@runnable
def test_blocked_pools(target):
    check(*one_op_graph(POOLS), target, tol=1e-5)


TRANSFORMS = [("LayoutTransform", [randn(1, 32, 7, 7)],
               {"src_layout": "NCHW", "dst_layout": "NCHW16c"}, ()),
              ("LayoutTransform", [randn(2, 12, 5, 6)],
               {"src_layout": "NCHW", "dst_layout": "NCHW4c"}, ()),
              ("LayoutTransform", [block_nchw(randn(1, 32, 7, 7), 16)],
               {"src_layout": "NCHW16c", "dst_layout": "NCHW"}, ()),
              ("LayoutTransform", [block_nchw(randn(1, 16, 4, 6), 8)],
               {"src_layout": "NCHW8c", "dst_layout": "NCHW"}, ())]


@runnable
def test_layout_transform(target):
    g, feeds = one_op_graph(TRANSFORMS)
    tvm_schedule.FALLBACKS.clear()
    for op, r, o in zip(g.ops, run_graph(g, feeds), run_kernels_in_tvm(g, feeds, target)):
        np.testing.assert_array_equal(o, r)       # data movement: exact
    assert tvm_schedule.FALLBACKS == []


def test_tile_model():
    """The register tile fits the register file and divides resnet50's rows on AVX-512
    (the measured best: 4 x 4 blocks on 56/28-wide rows, 14 x 2 on 14, 7 x 2 on 7); odd
    widths round up; depthwise bands of rows fit the scratch budget."""
    assert blocked_tile(4, 56, 16, 16, 32) == (4, 4)
    assert blocked_tile(16, 14, 16, 16, 32) == (14, 2)
    assert blocked_tile(32, 7, 16, 16, 32) == (7, 2)
    # vgg19's 28x28 512-channel 3x3 convs: 4 blocks of weights (1.1 MiB) exceed L2
    assert blocked_tile(32, 28, 16, 16, 32) == (4, 4)
    assert blocked_tile(32, 28, 16, 16, 32, block_weight_bytes=32 * 9 * 256 * 4) == (14, 2)
    for blocks, width, c, lanes, regs in [(4, 17, 16, 16, 32), (32, 7, 8, 8, 16),
                                          (6, 13, 16, 8, 16), (64, 28, 4, 4, 32)]:
        t, nb = blocked_tile(blocks, width, c, lanes, regs)
        v = -(-c // lanes)
        assert blocks % nb == 0 and t * nb * v + nb * v + 1 <= regs
    assert blocked_tile(4, 17, 16, 16, 32)[0] == 6           # rounds 17 up to 18
    assert depthwise_rows(112, 2, 3, 114 * 64) == 1
    assert depthwise_rows(7, 1, 3, 9 * 64) == 7


def test_blocked_rules_build_for_arm64(tmp_path):
    c4 = [conv(4, 8, 16, 9, 3), conv(4, 8, 8, 9, 3, depthwise=True),
          POOLS[1], POOLS[5], TRANSFORMS[1],
          ("LayoutTransform", [block_nchw(randn(1, 8, 5, 5), 4)],
           {"src_layout": "NCHW4c", "dst_layout": "NCHW"}, ())]
    g, _ = one_op_graph(c4)
    tvm_schedule.FALLBACKS.clear()
    lib = KernelSet(g, ARM64).compile(tmp_path)
    data = lib.objects[0].read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183  # aarch64
    assert tvm_schedule.FALLBACKS == []


@pytest.mark.parametrize("c", [8, 16])
def test_blocked_conv_on_avx2(c):
    """Tiles sized for 16 registers of 8 lanes (c = 16 takes two vectors per block)."""
    g, feeds = one_op_graph([conv(c, 32, 32, 11, 3), conv(c, 16, 16, 9, 3, depthwise=True)])
    tvm_schedule.FALLBACKS.clear()
    got = run_kernels_in_tvm(g, feeds, AVX2)
    assert tvm_schedule.FALLBACKS == []
    for r, o in zip(run_graph(g, feeds), got):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-3)
