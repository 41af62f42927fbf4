"""Vectorized transcendentals (backends/tvm/vector_math.py): error against numpy over the whole
float32 range (every 997th bit pattern, plus the edges: ±0, ±inf, NaN, the overflow and
underflow thresholds) on every runnable x86 target, and no scalar libm call left in a fused
conv + SiLU + Tanh kernel (x86 and arm64 objects)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import tvm
from tvm import te

from edgecc.backends.tvm import vector_math
from tests.targets import ARM64, AVX2, AVX512, RUNNABLE, target_id

EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1.0, -1.0, 88.72, 88.7228,
                  88.7229, 88.73, 1e10, -87.33, -87.3365, -87.34, -103.0, -1e10], np.float32)


def _compiled_exp(target, n):
    a = te.placeholder((n,), "float32", name="a")
    b = te.compute((n,), lambda i: vector_math.exp(a[i]), name="b")
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
    _compiled_exp(target, n)(tvm.runtime.tensor(x), out)
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


def _conv_silu_object(target, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import edgecc
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((32, 16, 1, 1)).astype(np.float32), "W")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Tanh", ["m"], ["y"])]
    g = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 16, 20, 20])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 32, 20, 20])], [w])
    path = tmp_path / "silu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    kw = {"mcpu": target.mcpu} if target.name == "x86_64" else {}
    art = edgecc.compile(str(path), target=target.name, outdir=str(tmp_path / target.name), **kw)
    return art, tmp_path / target.name / "kernels.o"


@pytest.mark.parametrize("target", [AVX512, AVX2, ARM64], ids=target_id)
def test_silu_tanh_epilogue_calls_no_scalar_libm(target, tmp_path):
    _, obj = _conv_silu_object(target, tmp_path)
    tool = "aarch64-linux-gnu-objdump" if target.name == "arm64" else "objdump"
    relocs = subprocess.run([tool, "-r", str(obj)], capture_output=True, text=True,
                            check=True).stdout
    assert not {"expf", "exp", "tanhf", "tanh"} & {w.split("-")[0] for w in relocs.split()}


def _compiled(fn, target, n):
    a = te.placeholder((n,), "float32", name="a")
    b = te.compute((n,), lambda i: fn(a[i]), name="b")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    (i,) = sch.get_loops(sch.get_sblock("b"))
    _, inner = sch.split(i, [None, target.lanes("f32")])
    sch.vectorize(inner)
    return tvm.compile(sch.mod, target=target.tvm)


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
