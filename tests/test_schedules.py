"""Default per-class schedules (backends/tvm/schedule_*.py rules): every rule's kernels match
the reference executor on several shapes (odd sizes, vector tails, strides, groups, fused
epilogues), for every x86 variant that runs here (AVX-512 and AVX2 on an AVX-512 host), the
rule is really applied (no fallback), decisions are checked for both x86 variants whatever the
host, and each rule builds for arm64."""
from __future__ import annotations

import numpy as np
import pytest

from edgecc.backends.tvm import primitives as tvm_schedule
from edgecc.backends.tvm.build import KernelSet, run_kernels_in_tvm
from edgecc.ir import Graph, TensorType, Value
from edgecc.kernels.executor import run_graph
from edgecc.ops import build_op
from tests.graphs import one_op_graph
from tests.targets import ARM64, AVX2, AVX512, X86, runnable, target_id

RNG = np.random.default_rng(7)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def check(cases, target, tol=1e-3):
    tvm_schedule.FALLBACKS.clear()
    g, feeds = one_op_graph(cases)
    ref = run_graph(g, feeds)
    got = run_kernels_in_tvm(g, feeds, target)
    for (kind, arrays, attrs, _), r, o in zip(cases, ref, got):
        scale = max(1.0, float(np.max(np.abs(r))))
        err = float(np.max(np.abs(r.astype(np.float64) - o)))
        assert o.shape == r.shape and err <= tol * scale, \
            (kind, [None if a is None else a.shape for a in arrays], attrs, err)
    assert tvm_schedule.FALLBACKS == []
    return g


def conv(cin, cout, hw, k, stride=1, pad=None, group=1, bias=True):
    h, w = hw if isinstance(hw, tuple) else (hw, hw)
    p = k // 2 if pad is None else pad
    arrays = [randn(1, cin, h, w), randn(cout, cin // group, k, k)]
    arrays += [randn(cout)] if bias else []
    return ("Conv", arrays, {"strides": [stride] * 2, "pads": [p] * 4, "group": group},
            (1, 2))


CONVS = [conv(16, 32, 13, 3), conv(3, 64, 111, 3, stride=2, pad=0), conv(5, 7, (9, 17), 3),
         conv(24, 40, 20, 3, stride=2), conv(64, 16, 55, 1, bias=False), conv(33, 20, 7, 1),
         conv(48, 96, (10, 23), 1, stride=2, pad=0), conv(12, 24, 11, 3, group=3),
         conv(1024, 32, 5, 1),                      # weights packed (4 KiB rows)
         conv(40, 24, (6, 12), 1, bias=False),      # pointwise: flattened 72-plane
         conv(1024, 48, (4, 6), 1),                 # pointwise plane + packed weights
         conv(544, 544, 7, 1, group=4),             # 7-wide rows: the plane padded 49 -> 64
         conv(40, 24, (3, 13), 1, bias=False)]      # ... 39 -> 48, no bias
DEPTHWISE = [conv(32, 32, 24, 3, group=32), conv(19, 19, 13, 5, stride=2, group=19),
             conv(16, 16, (7, 30), 3, stride=1, group=16, bias=False)]
CONV_T = [("ConvTranspose", [randn(1, 8, 9, 9), randn(8, 6, 2, 2), randn(6)],
           {"strides": [2, 2]}, (1, 2)),
          ("ConvTranspose", [randn(1, 4, 5, 7), randn(4, 3, 3, 3), randn(3)],
           {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, (1,)),
          ("ConvTranspose", [randn(1, 4, 5, 5), randn(4, 2, 3, 3)],
           {"strides": [3, 2], "group": 2, "dilations": [1, 2]}, (1,))]


GLOBAL_POOLS = [("GlobalAveragePool", [randn(1, 48, 3, 96)], {}, ()),
                ("GlobalAveragePool", [randn(2, 40, 20, 20)], {}, ()),
                ("GlobalAveragePool", [randn(1, 19, 13, 13)], {}, ()),
                ("GlobalAveragePool", [randn(1, 7, 5, 3)], {}, ()),       # narrow: generic
                ("GlobalMaxPool", [randn(1, 9, 6, 16)], {}, ())]


@runnable
def test_global_pool_rule(target):
    check(GLOBAL_POOLS, target)


@runnable
def test_direct_and_pointwise_conv_rules(target):
    check(CONVS, target)


@runnable
def test_depthwise_conv_rule(target):
    check(DEPTHWISE, target)


@runnable
def test_grouped_conv_tiles_stay_within_a_group(target):
    """shufflenet's group-4 1x1 convs (34-136 channels per group): MI 17, the largest
    divisor of a group's channels the registers hold (8 or 16 would straddle or waste);
    group-1 convs keep MI <= 16. The grouped kernel computes the same."""
    from edgecc.backends.tvm.schedule_conv import conv_tile
    assert conv_tile(136, 784, 16, 32, group_channels=34) == (17, 16)
    assert conv_tile(544, 16, 16, 32, group_channels=136) == (17, 16)
    assert conv_tile(544, 16, 16, 32) == (16, 16)
    check([conv(136, 136, 28, 1, group=4)], target)


@pytest.mark.parametrize("target,cin,hw,stride,rows", [
    (AVX512, 136, 28, 1, 28), (AVX512, 112, 56, 2, 2),     # 16 lanes: 2-row bands at 56x56
    (AVX2, 136, 28, 1, 28), (AVX2, 112, 56, 2, 7)],        # 8 lanes: MI 8, narrower bands fit
    ids=lambda x: target_id(x) if not isinstance(x, int) else str(x))
def test_depthwise_tasks_take_bands_of_rows(target, cin, hw, stride, rows):
    """shufflenet's NCHW depthwise convs: a task computes a band of output rows from one
    padded copy of the input rows it reads (copied once instead of 3 times: 1.4x faster on
    the 136-channel 28x28 layer) whose size depends on the target's tile, and computes the
    same (where the target runs here)."""
    from edgecc.backends.tune.search import traced
    from edgecc.backends.tvm.lower import kernel_prim_func
    case = conv(cin, cin, hw, 3, stride=stride, group=cin)
    g, _ = one_op_graph([case])
    _, knobs = traced(kernel_prim_func(g.ops[0], target), g.ops[0], target)
    assert knobs["conv.rows"][0] == rows
    if target.runs_here():
        check([case], target)


@runnable
def test_conv_transpose_phases(target):
    check(CONV_T, target)


@pytest.mark.parametrize("target", X86, ids=target_id)
@pytest.mark.parametrize("kind,wshape,attrs,out", [
    ("Conv", (24, 20, 3, 3), {"pads": [1] * 4}, (1, 24, 15, 15)),
    ("ConvTranspose", (20, 24, 2, 2), {"strides": [2, 2]}, (1, 24, 30, 30))])
def test_fused_epilogue(kind, wshape, attrs, out, target):
    """Conv/ConvTranspose + bias + Relu + residual Add as one Fused kernel (the anchor's rule
    schedules it). With 16 lanes the conv stays NCHW (24 channels are not whole blocks); with
    8 it runs blocked: its 20-channel input read as a view, the residual's conversion inside
    the kernel, one conversion of the result back to NCHW."""
    from edgecc.pass_manager import PassManager, pipeline
    x = Value("x", TensorType("f32", (1, 20, 15, 15)))
    r = Value("r", TensorType("f32", out))
    g = Graph("fused", [x, r])
    wv = g.add_param("w", randn(*wshape))
    bv = g.add_param("b", randn(24))
    c = build_op(kind, [x, wv, bv], attrs)
    a = build_op("Relu", [c.outputs[0]], {})
    s = build_op("Add", [a.outputs[0], r], {})
    g.ops = [c, a, s]
    g.outputs = s.outputs
    fused = PassManager(pipeline(3), target=target).run(g)
    kernels = [op for op in fused.ops if op.kind == "Fused"]
    assert len(kernels) == 1
    assert {kind, "Relu", "Add"} <= {o.kind for o in kernels[0].attrs["body"].ops}
    blocked = kind == "Conv" and target.lanes() == 8
    assert [op.kind for op in fused.ops if op.kind != "Fused"] == \
        (["Reshape", "LayoutTransform"] if blocked else [])    # x viewed [N,C,H,W,1]; output
    if not target.runs_here():
        return
    feeds = {"x": randn(1, 20, 15, 15), "r": randn(*out)}
    tvm_schedule.FALLBACKS.clear()
    np.testing.assert_allclose(run_kernels_in_tvm(fused, feeds, target)[0],
                               run_graph(g, feeds)[0], rtol=1e-4, atol=1e-3)
    assert tvm_schedule.FALLBACKS == []


def test_rules_build_for_arm64(tmp_path):
    g, _ = one_op_graph([CONVS[0], CONVS[4], DEPTHWISE[0], CONV_T[0], GLOBAL_POOLS[0]])
    tvm_schedule.FALLBACKS.clear()
    lib = KernelSet(g, ARM64).compile(tmp_path)
    data = lib.objects[0].read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183  # aarch64
    assert tvm_schedule.FALLBACKS == []


def test_lanes_follow_the_target():
    from edgecc.target import make_target
    assert AVX512.lanes() == 16 and AVX512.vector_registers == 32
    assert AVX2.lanes() == 8 and AVX2.vector_registers == 16
    assert ARM64.lanes() == 4 and ARM64.lanes("i8") == 16
    assert make_target("x86_64", mcpu="cascadelake").lanes() == 16    # named CPUs too
    assert make_target("x86_64", mcpu="znver2").lanes() == 8


@pytest.mark.parametrize("target,case,packed", [
    (AVX512, CONVS[1], False), (AVX512, CONVS[8], True), (AVX512, CONVS[10], True),
    (AVX512, CONVS[11], False),
    # AVX2 (16 registers): the 5-wide rows of CONVS[8] take MI 4 (no L1 set conflict), the
    # 24-column plane of CONVS[10] MI 8 weight rows 4 KiB apart (packed)
    (AVX2, CONVS[1], False), (AVX2, CONVS[8], False), (AVX2, CONVS[10], True),
    (AVX2, CONVS[11], False)], ids=lambda x: target_id(x) if not isinstance(x, (bool, tuple))
    else None)
def test_rule_is_parallel_and_vectorized(target, case, packed):
    from edgecc.backends.tvm.lower import lower_kernel
    g, _ = one_op_graph([case])
    script = lower_kernel(g.ops[0], "k", target).script()
    assert "T.parallel" in script and "T.vectorized" in script
    assert ("conv_wpack" in script) == packed


# Gemm / MatMul (schedule_dense): matrix-vector with K-vectorized weights (M == 1, or a few
# rows by a long K, transB; rows paired when even), register tiles otherwise;
# transposes/alpha/beta/broadcast C, batches, odd N and K tails.
DENSE = [("Gemm", [randn(1, 100), randn(37, 100), randn(37)], {"transB": 1}, (1, 2)),
         ("Gemm", [randn(1, 256), randn(40, 256), randn(40)], {"transB": 1}, (1, 2)),
         ("Gemm", [randn(20, 640), randn(44, 640), randn(44)], {"transB": 1}, (1, 2)),
         ("Gemm", [randn(7, 520), randn(30, 520)], {"transB": 1, "alpha": 0.5}, (1,)),
         ("Gemm", [randn(1, 9), randn(9, 23), randn(1, 23)], {"beta": 0.5}, (1, 2)),
         ("Gemm", [randn(5, 33), randn(33, 19), randn(19)], {"alpha": 0.5, "beta": 2.0}, (1, 2)),
         ("Gemm", [randn(33, 6), randn(21, 33), randn(6, 1)],
          {"transA": 1, "transB": 1, "beta": 0.7}, (1, 2)),
         ("Gemm", [randn(12, 40), randn(24, 40)], {"transB": 1, "alpha": 2.0}, (1,)),
         ("MatMul", [randn(2, 3, 17, 24), randn(3, 24, 40)], {}, ()),
         ("MatMul", [randn(64, 48), randn(48, 35)], {}, (1,)),
         ("MatMul", [randn(1, 200), randn(200, 2)], {}, (1,)),
         ("MatMul", [randn(7), randn(7, 5)], {}, ()),
         ("MatMul", [randn(4, 7), randn(7)], {}, ())]


@runnable
def test_dense_rule(target):
    check(DENSE, target)


def test_dense_rule_shapes_the_loops():
    """M == 1 with [N, K] weights reduces K in vector lanes (rfactor), and so do a few rows by
    a long K (two rows per weight load); many rows, or a short K, use register tiles with B
    transposed to [K, N]; all parallel over outputs."""
    from edgecc.backends.tvm.lower import lower_kernel
    g, _ = one_op_graph([("Gemm", [randn(1, 512), randn(256, 512), randn(256)],
                          {"transB": 1}, (1, 2)),
                         ("Gemm", [randn(20, 1024), randn(64, 1024)], {"transB": 1}, (1,)),
                         ("Gemm", [randn(20, 128), randn(96, 128)], {"transB": 1}, (1,)),
                         ("Gemm", [randn(64, 1024), randn(96, 1024)], {"transB": 1}, (1,))])
    gemv, rows, tiled, many = (lower_kernel(op, "k", AVX512).script() for op in g.ops)
    for script in (gemv, rows):
        assert "gemm_rf" in script and "T.vectorized" in script and "T.parallel" in script
    assert "T.parallel(160)" in rows and "T.unroll(2)" in rows     # 16 column chunks x 10 pairs
    for script in (tiled, many):
        assert "gemm_rf" not in script and "T.vectorized" in script
        assert "T.parallel" in script and "T.unroll" in script


@runnable
@pytest.mark.parametrize("m,k,kind", [(1, 70, "Gemm"), (6, 70, "Gemm"), (6, 70, "MatMul"),
                                      (6, 560, "Gemm")])
def test_dense_fused_epilogue(m, k, kind, target):
    """Gemm/MatMul + bias + Relu as one Fused kernel scheduled by the dense rule."""
    from edgecc.pass_manager import PassManager, pipeline
    x = Value("x", TensorType("f32", (m, k)))
    g = Graph("fused_dense", [x])
    if kind == "Gemm":
        op = build_op("Gemm", [x, g.add_param("w", randn(45, k)), g.add_param("b", randn(45))],
                      {"transB": 1})
        y = op
    else:
        op = build_op("MatMul", [x, g.add_param("w", randn(k, 45))], {})
        y = build_op("Add", [op.outputs[0], g.add_param("b", randn(45))], {})
    r = build_op("Relu", [y.outputs[0]], {})
    g.ops = [op] + ([y] if y is not op else []) + [r]
    g.outputs = r.outputs
    fused = PassManager(pipeline(3), target=target).run(g)
    assert [o.kind for o in fused.ops] == ["Fused"]
    feeds = {"x": randn(m, k)}
    tvm_schedule.FALLBACKS.clear()
    np.testing.assert_allclose(run_kernels_in_tvm(fused, feeds, target)[0], run_graph(g, feeds)[0],
                               rtol=1e-4, atol=1e-3)
    assert tvm_schedule.FALLBACKS == []


def test_dense_rule_builds_for_arm64(tmp_path):
    g, _ = one_op_graph([DENSE[1], DENSE[2], DENSE[6], DENSE[9], DENSE[10]])
    tvm_schedule.FALLBACKS.clear()
    lib = KernelSet(g, ARM64).compile(tmp_path)
    data = lib.objects[0].read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183  # aarch64
    assert tvm_schedule.FALLBACKS == []
