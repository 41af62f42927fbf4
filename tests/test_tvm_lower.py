"""TVM lowering vs the reference executor.

Each family test builds ONE graph holding many independent one-op cases (so TVM compiles
once per family), runs it with run_kernels_in_tvm and compares every result with the
reference executor (edgecc.kernels) within 1e-3 of the result's scale.
"""
from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from edgecc.errors import ModelError
from edgecc.ir import Graph, TensorType, Value
from edgecc.kernels.executor import run_graph
from edgecc.ops import build_op
from edgecc.backends.tvm.build import KernelSet, kernel_key, run_kernels_in_tvm
from edgecc.target import make_target
from edgecc.builder import GraphBuilder
from tests.targets import ARM64, AVX2, AVX512, FAST, X86, target_id

RNG = np.random.default_rng(1234)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


class Cases:
    """Independent one-op cases collected into one graph (operands become graph inputs,
    or params when `params` lists their positions)."""

    def __init__(self, name):
        self.builder = GraphBuilder(name)
        self.graph, self.feeds = self.builder.graph, self.builder.feeds
        self.labels: list[str] = []

    def add(self, kind, arrays, attrs=None, params=(), label=None):
        i = len(self.labels)
        vals = []
        for j, a in enumerate(arrays):
            if a is None:
                vals.append(None)
                continue
            name = f"c{i}_p{j}" if j in params else f"c{i}_in{j}"
            vals.append(self.builder.operand(name, a, j in params))
        op = build_op(kind, vals, attrs or {}, name=f"c{i}_{kind}")
        self.graph.ops.append(op)
        for k, out in enumerate(op.outputs):
            self.graph.outputs.append(out)
            self.labels.append(f"{label or kind} #{i} result {k}")
        return op

    def check(self, tol=1e-3):
        ref = run_graph(self.graph, self.feeds)
        got = run_kernels_in_tvm(self.graph, self.feeds, FAST)
        assert len(got) == len(ref)
        bad = []
        for label, r, g in zip(self.labels, ref, got):
            assert g.shape == r.shape and g.dtype == r.dtype, (label, g.shape, r.shape)
            if r.dtype == np.bool_ or np.issubdtype(r.dtype, np.integer):
                if not np.array_equal(r, g):
                    bad.append(f"{label}: {np.sum(r != g)} elements differ")
                continue
            scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
            err = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
            if not err <= tol * scale:
                bad.append(f"{label}: max abs err {err:.3g} (scale {scale:.3g})")
        assert not bad, "\n".join(bad)


def test_unary_elementwise():
    c = Cases("unary")
    x = randn(2, 3, 4, 5) * 3
    pos = np.abs(x) + 0.1
    for kind in ["Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Abs", "Floor", "Ceil",
                 "Round", "Sign", "Sin", "Cos", "Softplus", "Softsign", "HardSwish",
                 "Identity", "Dropout", "LeakyRelu", "Elu", "Selu", "HardSigmoid"]:
        c.add(kind, [x])
    for kind in ["Sqrt", "Log", "Reciprocal"]:
        c.add(kind, [pos])
    c.add("Round", [np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.49, -2.51], np.float32)],
          label="Round half-even")
    c.add("LeakyRelu", [x], {"alpha": 0.2})
    c.add("Gelu", [x])
    c.add("Gelu", [x], {"approximate": "tanh"})
    c.add("Clip", [x], {"min": -1.0, "max": 2.0})
    c.add("Clip", [x], {"min": 0.0})
    c.add("Clip", [np.arange(-5, 5, dtype=np.int64)], {"min": -2, "max": 3})
    c.add("Cast", [x], {"to": "i32"})
    c.add("Cast", [x], {"to": "bool"})
    c.add("Cast", [np.arange(6, dtype=np.int64)], {"to": "f32"})
    c.add("Cast", [np.array([True, False])], {"to": "f32"})
    c.add("Not", [np.array([True, False, True])])
    c.add("Abs", [np.arange(-3, 3, dtype=np.int32)])
    c.check()


def test_binary_broadcast_elementwise():
    c = Cases("binary")
    a, b = randn(2, 3, 4, 5), randn(3, 1, 5)
    bnz = np.where(np.abs(b) < 0.2, 0.5, b).astype(np.float32)
    for kind in ["Add", "Sub", "Mul", "Equal", "Less", "Greater", "LessOrEqual",
                 "GreaterOrEqual"]:
        c.add(kind, [a, b])
    c.add("Div", [a, bnz])
    c.add("Add", [a, np.float32(2.0)], label="Add scalar")
    c.add("Mul", [a, b], params=(1,), label="Mul param")
    c.add("Pow", [np.abs(a) + 0.1, b])
    ia = np.array([7, -7, 7, -7, 0, 5], np.int64)
    ib = np.array([2, 2, -2, -2, 3, 5], np.int64)
    c.add("Div", [ia, ib], label="Div int (truncate)")
    c.add("Mod", [ia, ib], label="Mod int (sign of divisor)")
    c.add("Mod", [ia, ib], {"fmod": 1}, label="Mod fmod=1")
    c.add("Mod", [np.array([5.5, -5.5, 5.5, -5.5], np.float32),
                  np.array([2, 2, -2, -2], np.float32)], {"fmod": 1}, label="Mod float fmod")
    p, q = RNG.random((3, 4)) > 0.5, RNG.random((4,)) > 0.5
    for kind in ["And", "Or", "Xor"]:
        c.add(kind, [p, q])
    c.add("Where", [RNG.random((3, 1, 5)) > 0.5, a, b])
    c.add("PRelu", [a, randn(3, 1, 1)])
    for kind in ["Max", "Min", "Sum", "Mean"]:
        c.add(kind, [a, b, randn(5)])
    c.add("Sum", [a], label="Sum of one")
    c.check()


def test_conv_and_dense():
    c = Cases("nn")
    x = randn(1, 4, 9, 9)
    c.add("Conv", [x, randn(6, 4, 3, 3), randn(6)], {"pads": [1, 0, 2, 1]}, params=(1, 2))
    c.add("Conv", [x, randn(6, 2, 3, 3)], {"strides": [2, 2], "group": 2, "pads": [1, 1, 1, 1]},
          params=(1,), label="Conv grouped strided")
    c.add("Conv", [x, randn(4, 1, 3, 3), randn(4)], {"group": 4, "dilations": [2, 2],
                                                      "pads": [2, 2, 2, 2]},
          params=(1, 2), label="Conv depthwise dilated")
    c.add("Conv", [randn(2, 3, 10), randn(5, 3, 3)], {"strides": [2], "pads": [1, 1]},
          label="Conv 1-D")
    c.add("Conv", [x, randn(8, 4, 1, 1)], params=(1,), label="Conv 1x1")
    c.add("ConvTranspose", [randn(1, 4, 5, 5), randn(4, 3, 3, 3), randn(3)],
          {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, params=(1, 2))
    c.add("ConvTranspose", [randn(1, 4, 5, 5), randn(4, 2, 2, 3)],
          {"strides": [2, 1], "group": 2, "dilations": [1, 2]}, label="ConvTranspose grouped")
    c.add("Gemm", [randn(3, 5), randn(5, 4), randn(4)])
    c.add("Gemm", [randn(5, 3), randn(4, 5), randn(3, 1)],
          {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, label="Gemm transposed")
    c.add("Gemm", [randn(3, 5), randn(5, 4)], label="Gemm no C")
    c.add("MatMul", [randn(3, 5), randn(5, 4)])
    c.add("MatMul", [randn(2, 3, 5), randn(5, 4)], label="MatMul batched")
    c.add("MatMul", [randn(2, 1, 3, 5), randn(3, 5, 4)], label="MatMul broadcast batch")
    c.add("MatMul", [randn(5), randn(5, 4)], label="MatMul 1-D lhs")
    c.add("MatMul", [randn(2, 3, 5), randn(5)], label="MatMul 1-D rhs")
    c.add("BatchNormalization", [x, randn(4), randn(4), randn(4), np.abs(randn(4)) + 0.5],
          params=(1, 2, 3, 4))
    c.add("InstanceNormalization", [x, randn(4), randn(4)])
    c.add("LayerNormalization", [randn(2, 3, 8), randn(8), randn(8)], {"axis": 2})
    c.add("LayerNormalization", [randn(2, 3, 8), randn(3, 8)], {"axis": 1},
          label="LayerNormalization no bias")
    c.add("LRN", [randn(1, 7, 4, 4)], {"size": 3})
    c.add("LRN", [randn(1, 7, 4, 4)], {"size": 4, "alpha": 0.01, "beta": 0.5, "bias": 2.0},
          label="LRN even size")
    c.check()


def test_pooling_reductions_softmax():
    c = Cases("pool")
    x = randn(1, 3, 9, 10)
    c.add("MaxPool", [x], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    c.add("MaxPool", [x], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
          label="MaxPool ceil")
    c.add("MaxPool", [x], {"kernel_shape": [2, 2], "dilations": [2, 2]}, label="MaxPool dil")
    c.add("AveragePool", [x], {"kernel_shape": [3, 3], "strides": [2, 2],
                               "pads": [1, 1, 1, 1]})
    c.add("AveragePool", [x], {"kernel_shape": [3, 3], "strides": [2, 2],
                               "pads": [1, 1, 1, 1], "count_include_pad": 1},
          label="AveragePool include pad")
    c.add("AveragePool", [x], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                               "count_include_pad": 1, "pads": [1, 1, 1, 1]},
          label="AveragePool ceil include pad")
    c.add("AveragePool", [randn(1, 2, 11)], {"kernel_shape": [4], "strides": [3],
                                             "ceil_mode": 1}, label="AveragePool 1-D ceil")
    for include in (0, 1):      # dilated windows: the divisor counts the taps that land inside
        c.add("AveragePool", [x], {"kernel_shape": [3, 2], "strides": [2, 1], "ceil_mode": 1,
                                   "dilations": [2, 3], "pads": [2, 1, 1, 1],
                                   "count_include_pad": include},
              label=f"AveragePool dilated include pad {include}")
    c.add("GlobalAveragePool", [x])
    c.add("GlobalMaxPool", [x])
    y = randn(2, 3, 4, 5)
    for kind in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                 "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"]:
        c.add(kind, [y], {"axes": [1, 3]})
        c.add(kind, [y], {"axes": [0, 1, 2, 3], "keepdims": 0}, label=f"{kind} all")
    ties = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)
    for kind in ["ArgMax", "ArgMin"]:
        c.add(kind, [y], {"axis": 2})
        c.add(kind, [ties], {"axis": 1, "keepdims": 0}, label=f"{kind} ties first")
        c.add(kind, [ties], {"axis": 1, "select_last_index": 1}, label=f"{kind} ties last")
    c.add("Softmax", [y * 5], {"axis": 3})
    c.add("Softmax", [y], {"axis": 1})
    c.add("LogSoftmax", [y * 5], {"axis": 3})
    c.check()


def test_data_movement():
    c = Cases("data")
    x = randn(2, 3, 4, 5)
    c.add("Transpose", [x], {"perm": [0, 2, 3, 1]})
    c.add("Expand", [randn(3, 1, 5)], {"shape": [2, 3, 4, 5]})
    c.add("Concat", [x, randn(2, 1, 4, 5), randn(2, 2, 4, 5)], {"axis": 1})
    c.add("Split", [x], {"axis": 3, "split": [2, 3]})
    c.add("Slice", [x], {"starts": [1, 0], "ends": [4, 5], "axes": [2, 3], "steps": [2, 2]})
    c.add("Slice", [x], {"starts": [4], "ends": [-1], "axes": [3], "steps": [-2]},
          label="Slice negative step")
    c.add("Gather", [x, np.array([[0, -1], [2, 1]], np.int64)], {"axis": 1})
    c.add("Gather", [x, np.array(3, np.int64)], {"axis": 2}, label="Gather scalar index")
    c.add("GatherElements", [randn(3, 4), np.array([[0, 1, 2, -1], [2, 2, 0, 1]], np.int64)],
          {"axis": 0})
    c.add("Tile", [randn(2, 3)], {"repeats": [2, 3]})
    for mode in ["constant", "reflect", "edge", "wrap"]:
        c.add("Pad", [randn(1, 2, 4, 5)], {"pads": [0, 0, 2, 1, 0, 0, 1, 3], "mode": mode,
                                          "value": 1.5}, label=f"Pad {mode}")
    c.add("Pad", [randn(1, 2, 4, 5)], {"pads": [0, 0, -1, 1, 0, 0, 1, -2]},
          label="Pad negative")
    c.add("DepthToSpace", [randn(1, 8, 2, 3)], {"blocksize": 2})
    c.add("DepthToSpace", [randn(1, 8, 2, 3)], {"blocksize": 2, "mode": "CRD"},
          label="DepthToSpace CRD")
    c.add("SpaceToDepth", [randn(1, 2, 4, 6)], {"blocksize": 2})
    for kind, attrs in [("Reshape", {"shape": [6, 20]}), ("Flatten", {"axis": 2}),
                        ("Unsqueeze", {"axes": [0, 3]})]:
        c.add(kind, [x], attrs)
    c.add("Squeeze", [randn(2, 1, 3)], {"axes": [1]})
    c.check()


RESIZES = [
    {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    {"mode": "nearest", "coordinate_transformation_mode": "half_pixel"},
    {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
     "nearest_mode": "round_prefer_ceil"},
    {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
    {"mode": "cubic", "coordinate_transformation_mode": "half_pixel"},
    {"mode": "cubic", "coordinate_transformation_mode": "align_corners", "exclude_outside": 1},
]


def test_resize():
    c = Cases("resize")
    x = randn(1, 2, 4, 5)
    for attrs in RESIZES:
        label = f"Resize {attrs['mode']}/{attrs['coordinate_transformation_mode']}"
        c.add("Resize", [x], {**attrs, "scales": [1.0, 1.0, 2.0, 2.0]}, label=label + " up")
        c.add("Resize", [x], {**attrs, "sizes": [1, 2, 3, 3]}, label=label + " down")
    big = randn(1, 2, 23, 31)
    for mode in ("linear", "cubic"):     # antialias: downscaled axes read 1/scale more taps
        for exclude in (0, 1):
            c.add("Resize", [big], {"mode": mode, "antialias": 1, "exclude_outside": exclude,
                                    "scales": [1.0, 1.0, 0.3, 0.55]},
                  label=f"Resize {mode} antialias exclude {exclude}")
        c.add("Resize", [big], {"mode": mode, "antialias": 1, "sizes": [1, 2, 7, 40]},
              label=f"Resize {mode} antialias down H, up W")
    crop = {"coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 7.0,
            "roi": [0.0, 0.0, -0.2, 0.1, 1.0, 1.0, 0.9, 1.3]}
    for mode in ("nearest", "linear", "cubic"):
        c.add("Resize", [x], {**crop, "mode": mode, "sizes": [1, 2, 6, 4]},
              label=f"Resize {mode} tf_crop_and_resize")
    c.add("Resize", [big], {**crop, "mode": "linear", "antialias": 1, "sizes": [1, 2, 5, 9]},
          label="Resize tf_crop_and_resize antialias")
    c.check()


@pytest.mark.parametrize("antialias", [0, 1])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_uint8_rounds_and_saturates(mode, antialias):
    """Integer images: the compiled kernel rounds half to even and saturates as the reference
    does (its float32 weights may put a value on the other side of a .5 tie: one step)."""
    g = GraphBuilder("resize_u8")
    x = g.input("x", RNG.integers(0, 256, (1, 3, 17, 19)).astype(np.uint8))
    g.build(g.op("Resize", [x], mode=mode, sizes=[1, 3, 29, 8],
                 antialias=antialias))
    ref = run_graph(g.graph, g.feeds)[0]
    got = run_kernels_in_tvm(g.graph, g.feeds, FAST)[0]
    diff = np.abs(got.astype(int) - ref)
    assert got.dtype == np.uint8 and diff.max() <= 1 and np.mean(diff == 0) > 0.99


# ---- Fused kernels ---------------------------------------------------------------------------

def fused_graph(build_body, outer_arrays, param_positions=(), label=""):
    """A graph with one Fused op whose body `build_body(inputs) -> (ops, outputs)`."""
    bld = GraphBuilder("fused")
    g, feeds = bld.graph, bld.feeds
    body = Graph("body")
    outer = []
    for j, a in enumerate(outer_arrays):
        body.inputs.append(Value(f"b{j}", TensorType.of(a)))
        as_param = j in param_positions
        outer.append(bld.operand(f"p{j}" if as_param else f"x{j}", a, as_param))
    body.ops, body.outputs = build_body(body.inputs)
    op = build_op("Fused", outer, {"body": body, "kernel": label}, name="fused0")
    g.ops = [op]
    g.outputs = list(op.outputs)
    return g, feeds


def conv_bias_relu(ins):
    x, w, b = ins
    conv = build_op("Conv", [x, w, b], {"pads": [1, 1, 1, 1]}, name="conv")
    relu = build_op("Relu", [conv.output], name="relu")
    return [conv, relu], [relu.output]


def elementwise_chain(ins):
    x, y = ins
    a = build_op("Mul", [x, y], name="mul")
    b = build_op("Sigmoid", [a.output], name="sig")
    r = build_op("Reshape", [b.output], {"shape": [4, 30]}, name="reshape")
    d = build_op("Add", [r.output, r.output], name="add")
    e = build_op("Clip", [d.output], {"min": 0.0, "max": 1.5}, name="clip")
    return [a, b, r, d, e], [e.output, a.output]


def assert_close(ref, got, tol=1e-3):
    for r, g in zip(ref, got):
        scale = max(1.0, float(np.max(np.abs(r))))
        assert float(np.max(np.abs(r - g))) <= tol * scale


def test_fused_conv_bias_relu_is_one_kernel():
    from edgecc.backends.tvm import primitives as tvm_schedule
    g, feeds = fused_graph(conv_bias_relu, [randn(1, 8, 12, 12), randn(16, 8, 3, 3), randn(16)],
                           param_positions=(1, 2), label="conv_bias_relu")
    tvm_schedule.FALLBACKS.clear()
    kernels = KernelSet(g, FAST)
    assert [c.kind for c in kernels.calls()] == ["kernel"]
    assert [k.func for k in kernels.functions()] == ["k0_conv_bias_relu"]
    assert tvm_schedule.FALLBACKS == []          # the Conv rule scheduled the fused kernel
    assert_close(run_graph(g, feeds), run_kernels_in_tvm(g, feeds, FAST))


def test_fused_elementwise_chain_with_view_and_two_results():
    g, feeds = fused_graph(elementwise_chain, [randn(2, 3, 4, 5), randn(3, 1, 5)])
    assert_close(run_graph(g, feeds), run_kernels_in_tvm(g, feeds, FAST))


# ---- build: library layout, dedup, determinism, arm64, errors ---------------------------------

def two_conv_graph():
    """conv -> relu -> conv (same shapes: one function) -> flatten (a view)."""
    x = Value("x", TensorType("f32", (1, 4, 8, 8)))
    g = Graph("twoconv", [x])
    w1 = g.add_param("w1", randn(4, 4, 3, 3))
    w2 = g.add_param("w2", randn(4, 4, 3, 3))
    attrs = {"pads": [1, 1, 1, 1]}
    c1 = build_op("Conv", [x, w1], attrs, name="conv1")
    r = build_op("Relu", [c1.output], name="relu1")
    c2 = build_op("Conv", [r.output, w2], attrs, name="conv2")
    f = build_op("Flatten", [c2.output], {"axis": 1}, name="flat")
    g.ops = [c1, r, c2, f]
    g.outputs = [f.output]
    return g


@pytest.fixture(scope="module")
def x86_lib(tmp_path_factory):
    return KernelSet(two_conv_graph(), AVX2).compile(tmp_path_factory.mktemp("x86"))


def test_library_calls_dedup_and_views(x86_lib):
    lib = x86_lib
    assert [c.kind for c in lib.calls] == ["kernel", "kernel", "kernel", "view"]
    assert lib.calls[0].func == lib.calls[2].func          # identical convs share a function
    assert len(lib.functions) == 2 and lib.num_kernels == 3
    c1 = lib.calls[0]
    assert [(a.name, a.role) for a in c1.args] == [("x", "input"), ("w1", "param"),
                                                  ("conv1_out0", "output")]
    assert c1.symbol == f"__tvm_ffi_{c1.func}" and lib.calls[3].symbol is None
    nm = subprocess.run(["nm", str(lib.objects[0])], capture_output=True, text=True).stdout
    for f in lib.functions:
        assert f" T __tvm_ffi_{f}\n" in nm


def test_build_is_deterministic(x86_lib, tmp_path):
    again = KernelSet(two_conv_graph(), AVX2).compile(tmp_path)
    assert again.objects[0].read_bytes() == x86_lib.objects[0].read_bytes()


def test_arm64_build_is_an_aarch64_elf_object(tmp_path):
    lib = KernelSet(two_conv_graph(), ARM64).compile(tmp_path)
    data = lib.objects[0].read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2                       # ELF64
    e_type, e_machine = struct.unpack("<HH", data[16:20])
    assert e_type == 1 and e_machine == 183                              # ET_REL, EM_AARCH64
    if shutil.which("file"):
        out = subprocess.run(["file", str(lib.objects[0])], capture_output=True, text=True)
        assert "aarch64" in out.stdout


def test_kernel_key_distinguishes_attrs_and_types():
    x = Value("x", TensorType("f32", (1, 2, 4, 4)))
    a = build_op("LeakyRelu", [x], {"alpha": 0.1})
    b = build_op("LeakyRelu", [x], {"alpha": 0.2})
    c = build_op("LeakyRelu", [Value("y", TensorType("f32", (1, 2, 4, 4)))], {"alpha": 0.1})
    assert kernel_key(a) != kernel_key(b)
    assert kernel_key(a) == kernel_key(c)


def test_unsupported_op_is_a_model_error_naming_the_node(monkeypatch):
    from edgecc.backends.tvm import te_rules
    monkeypatch.delitem(te_rules.LOWERINGS, "Relu")
    x = Value("x", TensorType("f32", (4,)))
    op = build_op("Relu", [x], name="my_relu")
    g = Graph("g", [x], [], [op], [op.output])
    with pytest.raises(ModelError, match="my_relu"):
        KernelSet(g, AVX2)


@pytest.mark.parametrize("target", X86, ids=target_id)
def test_conv_schedule_rule_applies_to_common_convs(target):
    from edgecc.backends.tvm import primitives as tvm_schedule
    from edgecc.backends.tvm.lower import lower_kernel
    tvm_schedule.FALLBACKS.clear()
    for cin, cout, hw, k, pads, stride, group in [(16, 32, 13, 3, [1] * 4, 1, 1),
                                                  (64, 16, 55, 1, [0] * 4, 1, 1),
                                                  (3, 64, 224, 3, [0] * 4, 2, 1),
                                                  (32, 32, 24, 3, [1] * 4, 1, 32)]:
        x = Value("x", TensorType("f32", (1, cin, hw, hw)))
        w = Value("w", TensorType("f32", (cout, cin // group, k, k)))
        op = build_op("Conv", [x, w], {"pads": pads, "strides": [stride] * 2, "group": group})
        script = lower_kernel(op, "k", target).script()
        assert "T.parallel" in script and "T.vectorized" in script
    assert tvm_schedule.FALLBACKS == []


# ---- whole models ----------------------------------------------------------------------------

def _model_check(zoo_path, name, tol=1e-3):
    from edgecc import zoo
    from edgecc.onnx_import import import_onnx
    g = import_onnx(str(zoo_path(name)), zoo.default_input_shapes(name))
    feeds = zoo.sample_inputs(name)
    ref = run_graph(g, feeds)
    got = run_kernels_in_tvm(g, feeds, FAST)
    for r, o in zip(ref, got):
        scale = max(1e-6, float(np.max(np.abs(r))))
        assert float(np.max(np.abs(r - o))) <= tol * scale, name


def test_squeezenet_matches_reference(zoo_path):
    _model_check(zoo_path, "squeezenet")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppocr_cls", "ppocr_det", "resnet50", "inception_v1",
                                  "shufflenet", "bvlc_alexnet"])
def test_model_matches_reference(zoo_path, name):
    _model_check(zoo_path, name)


def test_lstm():
    c = Cases("lstm")
    T, N, I, H = 3, 2, 3, 5
    x = randn(T, N, I)
    c.add("LSTM", [x, randn(1, 4 * H, I), randn(1, 4 * H, H), randn(1, 8 * H)],
          {"hidden_size": H}, params=(1, 2, 3))
    c.add("LSTM", [x, randn(2, 4 * H, I), randn(2, 4 * H, H), randn(2, 8 * H),
                   np.array([3, 2], np.int32), randn(2, N, H), randn(2, N, H)],
          {"hidden_size": H, "direction": "bidirectional", "clip": 1.5},
          label="LSTM bidirectional seq_lens clip initial state")
    c.add("LSTM", [randn(N, T, I), randn(1, 4 * H, I), randn(1, 4 * H, H)],
          {"hidden_size": H, "direction": "reverse", "layout": 1, "input_forget": 1},
          label="LSTM reverse layout=1 input_forget")
    c.check()


# ---- targets ---------------------------------------------------------------------------------

def test_targets(tmp_path):
    from edgecc.target import host_x86_level
    from edgecc.errors import UsageError
    arm = make_target("arm64", mattr="+dotprod")
    assert arm.triple == "aarch64-linux-gnu" and arm.mattr == ("+neon", "+dotprod")
    assert arm.tvm.attrs["mtriple"] == "aarch64-linux-gnu"
    assert make_target("x86_64", mcpu="skylake-avx512").tvm.attrs["mcpu"] == "skylake-avx512"
    assert make_target("x86_64") == make_target("x86_64")            # deterministic
    assert make_target("x86_64").mcpu == "x86-64-v3"       # portable unless a CPU is named
    assert AVX512.has("avx512f") and not AVX2.has("avx512f") and AVX2.has("fma")
    assert make_target("x86_64", mcpu="cascadelake").int8_dot == "avx512vnni"
    assert make_target("x86_64", mcpu="alderlake").int8_dot == "avxvnni"
    assert ARM64.int8_dot is None and arm.int8_dot == "dotprod" and arm.has("dotprod")
    with pytest.raises(UsageError, match="not a CPU LLVM knows"):
        make_target("x86_64", mcpu="pentium-9000")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse4_1 sse4_2 ssse3 popcnt cx16 avx avx2 "
                       "bmi1 bmi2 fma movbe xsave\n")
    assert host_x86_level(str(cpuinfo)) == "x86-64-v3"
    assert host_x86_level(str(tmp_path / "missing")) == "x86-64-v3"
    with pytest.raises(UsageError, match="unknown target"):
        make_target("riscv")
    with pytest.raises(UsageError, match="mattr"):
        make_target("arm64", mattr="dotprod")
