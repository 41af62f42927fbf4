"""Vectorized transcendentals (backends/tvm/vector_math.py): error against numpy over the whole
float32 range (every 997th bit pattern, plus the edges: ±0, ±inf, NaN, the overflow and
underflow thresholds) on every runnable x86 target; kernels with transcendental epilogues call
no scalar libm function; chains of transcendentals build quickly (the regression that once
kept them out of the kernels)."""
from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te

from edgecc.backends.tvm import vector_math
from tests.targets import RUNNABLE, X86, target_id

EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1.0, -1.0, 88.72, 88.7228,
                  88.7229, 88.73, 1e10, -87.33, -87.3365, -87.34, -103.0, -1e10], np.float32)


def _compiled(fn, target, n):
    a = te.placeholder((n,), "float32", name="a")
    b = te.compute((n,), lambda i: fn(a[i]), name="b")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    (i,) = sch.get_loops(sch.get_sblock("b"))
    _, inner = sch.split(i, [None, target.lanes("f32")])
    sch.vectorize(inner)
    return tvm.compile(sch.mod, target=target.tvm)


@pytest.mark.parametrize("target", RUNNABLE, ids=target_id)
def test_exp_is_within_about_one_ulp_over_the_float_range(target):
    xs = np.arange(0, 1 << 32, 997, dtype=np.uint64).astype(np.uint32).view(np.float32)
    xs = np.concatenate([xs, EDGES])
    n = xs.size + (-xs.size) % 16
    x = np.zeros(n, np.float32)
    x[:xs.size] = xs
    out = tvm.runtime.empty((n,), "float32")
    _compiled(vector_math.exp, target, n)(tvm.runtime.tensor(x), out)
    got = out.numpy()[:xs.size]
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.exp(xs.astype(np.float64))
    normal = np.isfinite(xs) & (want >= np.finfo(np.float32).tiny) & (want <= 3.4028e38)
    ulp = np.spacing(want[normal].astype(np.float32)).astype(np.float64)
    err = np.abs(got[normal].astype(np.float64) - want[normal]) / ulp
    assert err.max() <= 1.05
    assert np.isnan(got[np.isnan(xs)]).all()
    assert (got[xs > vector_math.EXP_MAX] == np.inf).all()
    assert (got[xs < vector_math.EXP_MIN] == 0).all()        # (subnormal results flush)
    assert got[xs == 0].tolist() == [1.0] * int((xs == 0).sum())


def test_chains_of_transcendentals_compile_quickly_and_match(tmp_path):
    """Sigmoid/Tanh/HardSwish/Mish chains whose ops read their operand several times, fused
    into one kernel: they build in seconds and agree with onnxruntime. (With the polynomial
    exp/tanh inlined at every read, such chains grew exponentially and took minutes in LLVM;
    the fused kernel now computes such operands once into a buffer.)"""
    import time
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    import edgecc
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "s"], ["m"]),
             helper.make_node("Sigmoid", ["m"], ["s2"]), helper.make_node("HardSwish", ["s2"], ["h"]),
             helper.make_node("Sigmoid", ["h"], ["s3"]), helper.make_node("Mul", ["s3", "h"], ["m3"]),
             helper.make_node("Tanh", ["m3"], ["t"]), helper.make_node("Mish", ["t"], ["y"])]
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 8, 5, 7]) for n in "xy"]
    path = tmp_path / "chain.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "chain", info[:1], info[1:]),
                                opset_imports=[helper.make_opsetid("", 18)]), path)
    t0 = time.perf_counter()
    art = edgecc.compile(str(path), outdir=str(tmp_path / "b"), mcpu="x86-64-v3")
    assert time.perf_counter() - t0 < 60
    x = np.random.default_rng(0).standard_normal((2, 8, 5, 7)).astype(np.float32) * 3
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    assert np.abs(art.run({"x": x})[0] - want).max() <= 1e-5


@pytest.mark.parametrize("target", RUNNABLE, ids=target_id)
def test_tanh_is_within_about_one_ulp_over_the_float_range(target):
    xs = np.arange(0, 1 << 32, 997, dtype=np.uint64).astype(np.uint32).view(np.float32)
    xs = np.concatenate([xs, EDGES, np.float32([0.6249, 0.625, 0.6251, 9.0, 9.1, 9.2, -9.2])])
    n = xs.size + (-xs.size) % 16
    x = np.zeros(n, np.float32)
    x[:xs.size] = xs
    out = tvm.runtime.empty((n,), "float32")
    _compiled(vector_math.tanh, target, n)(tvm.runtime.tensor(x), out)
    got = out.numpy()[:xs.size]
    with np.errstate(invalid="ignore"):
        want = np.tanh(xs.astype(np.float64))
    ok = np.isfinite(xs) & (np.abs(want) >= np.finfo(np.float32).tiny)
    ulp = np.spacing(np.abs(want[ok]).astype(np.float32)).astype(np.float64)
    assert (np.abs(got[ok].astype(np.float64) - want[ok]) / ulp).max() <= 1.3   # 1.25 measured
    assert np.isnan(got[np.isnan(xs)]).all()
    assert got[xs == np.inf].tolist() == [1.0] and got[xs == -np.inf].tolist() == [-1.0]


@pytest.mark.parametrize("target", X86, ids=target_id)
@pytest.mark.parametrize("act", ["Sigmoid", "Tanh", "Mish"])
def test_conv_epilogues_call_no_scalar_transcendental(act, target, tmp_path):
    """Conv + SiLU (x * sigmoid(x)), + Tanh, + Mish fused into one kernel on the conv schedule,
    for AVX-512 and AVX2: the object file references no expf/tanhf (one libm call per lane
    was 4-8x slower than onnxruntime), and runnable builds match the reference executor."""
    from edgecc.backends.tvm import primitives
    from edgecc.backends.tvm.build import KernelSet, run_kernels_in_tvm
    from edgecc.ir import Graph, TensorType, Value
    from edgecc.kernels.executor import run_graph
    from edgecc.ops import build_op
    from edgecc.pass_manager import PassManager, pipeline
    rng = np.random.default_rng(3)
    x = Value("x", TensorType("f32", (1, 16, 20, 20)))
    g = Graph("epilogue", [x])
    conv = build_op("Conv", [x, g.add_param("w", rng.standard_normal((32, 16, 1, 1), "f4")),
                             g.add_param("b", rng.standard_normal(32, "f4"))], {})
    ops = [conv, build_op(act, [conv.output], {})]
    if act == "Sigmoid":
        ops.append(build_op("Mul", [conv.output, ops[-1].output], {}))
    g.ops, g.outputs = ops, [ops[-1].output]
    fused = PassManager(pipeline(3), target=target).run(g)
    kernels = [o for o in fused.ops if o.kind == "Fused"]
    assert len(kernels) == 1 and kernels[0].attrs["body"].ops[0].kind == "Conv"
    primitives.FALLBACKS.clear()
    obj = KernelSet(fused, target).compile(tmp_path).objects[0].read_bytes()
    assert primitives.FALLBACKS == []
    assert b"expf" not in obj and b"tanhf" not in obj
    if target in RUNNABLE:
        feeds = {"x": rng.standard_normal((1, 16, 20, 20), "f4") * 2}
        np.testing.assert_allclose(run_kernels_in_tvm(fused, feeds, target)[0],
                                   run_graph(g, feeds)[0], rtol=1e-5, atol=1e-5)
