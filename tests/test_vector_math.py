"""Vectorized transcendentals (backends/tvm/vector_math.py): error against numpy over the whole
float32 range (every 997th bit pattern, plus the edges: ±0, ±inf, NaN, the overflow and
underflow thresholds) on every runnable x86 target; and the regression that kept them out of
the kernels for now (chains of transcendentals)."""
from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te

from edgecc.backends.tvm import vector_math
from tests.targets import RUNNABLE, target_id

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
    exp/tanh inlined at every read, such chains grew exponentially and took minutes in LLVM:
    that is why the kernels do not use vector_math yet.)"""
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
