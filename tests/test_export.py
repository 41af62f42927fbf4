"""ONNX exporter: import → (optimize →) export → onnxruntime equals the original model in
onnxruntime; hand-made IR for what importing cannot produce (Fused, Gelu, pass-through outputs)."""
import numpy as np
import onnx
import pytest

from edgecc import zoo
from edgecc.errors import ModelError, UsageError
from edgecc.ir import Graph, TensorType, Value
from edgecc.onnx_export import export_onnx
from edgecc.onnx_import import import_onnx
from edgecc.ops import build_op
from tests.onnx_cases import CASES, ort_run, rel_err
from tests.targets import AVX512

FAST_ZOO = ("squeezenet", "ppocr_cls")


def _export_checked(graph, opset=17) -> onnx.ModelProto:
    model = export_onnx(graph, opset)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_small_case_round_trip(case, opset):
    model = case.model()
    graph = import_onnx(model)
    if case.id == "layernorm" and opset < 17:
        with pytest.raises(ModelError, match="LayerNormalization needs ONNX opset >= 17"):
            export_onnx(graph, opset)
        return
    ref = ort_run(model, case.inputs)
    got = ort_run(_export_checked(graph, opset), case.inputs)
    assert [o.name for o in export_onnx(graph, opset).graph.output] == case.outputs
    for r, o in zip(ref, got):
        assert r.shape == o.shape and r.dtype == o.dtype
        assert rel_err(r, o) <= 1e-6


def test_bad_opset():
    g = import_onnx(CASES[0].model())
    for opset in (12, 22):
        with pytest.raises(UsageError, match="opsets 13-21"):
            export_onnx(g, opset)


# ---- hand-made IR ------------------------------------------------------------------------------
def _graph_x(shape=(2, 5)):
    x = Value("x", TensorType("f32", shape))
    return Graph("g", [x]), x


def _emit(g, kind, ins, attrs=None, name=None):
    op = build_op(kind, ins, attrs or {}, name=name or f"{kind.lower()}{len(g.ops)}",
                  out_names=None)
    for k, v in enumerate(op.outputs):
        v.name = g.fresh_name(f"{op.name}_{k}")
    g.ops.append(op)
    return op.outputs[0]


X = np.random.default_rng(0).uniform(-3, 3, (2, 5)).astype(np.float32)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("opset", [17, 20])
def test_gelu(approximate, opset):
    from math import erf, sqrt, tanh, pi
    g, x = _graph_x()
    g.outputs = [_emit(g, "Gelu", [x], {"approximate": approximate})]
    (got,) = ort_run(_export_checked(g, opset), {"x": X})
    if approximate == "none":
        want = [0.5 * v * (1 + erf(v / sqrt(2))) for v in X.flat]
    else:
        want = [0.5 * v * (1 + tanh(sqrt(2 / pi) * (v + 0.044715 * v ** 3))) for v in X.flat]
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5, atol=1e-6)
    kinds = {n.op_type for n in export_onnx(g, opset).graph.node}
    assert ("Gelu" in kinds) == (opset >= 20)


def test_hardswish_at_opset13():
    g, x = _graph_x()
    g.outputs = [_emit(g, "HardSwish", [x])]
    (got,) = ort_run(_export_checked(g, 13), {"x": X})
    np.testing.assert_allclose(got, X * np.clip(X / 6 + 0.5, 0, 1), rtol=1e-6, atol=1e-7)


def test_fused_is_inlined():
    g, x = _graph_x()
    w = g.add_param("w", np.linspace(-1, 1, 5, dtype=np.float32))
    # body: relu(a * b) + a, results: that and a pass-through of operand b
    a = Value("a", TensorType("f32", (2, 5)))
    b = Value("b", TensorType("f32", (5,)))
    body = Graph("body", [a, b])
    m = _emit(body, "Mul", [a, b])
    r = _emit(body, "Relu", [m])
    s = _emit(body, "Add", [r, a])
    body.outputs = [s, b, s]
    fused = build_op("Fused", [x, w], {"body": body, "kernel": "mul_relu_add"}, name="f0",
                     out_names=["y", "w_copy", "y_again"])
    g.ops.append(fused)
    g.outputs = [fused.outputs[0], _emit(g, "Neg", [fused.outputs[1]]), fused.outputs[2]]
    model = _export_checked(g)
    assert "Fused" not in {n.op_type for n in model.graph.node}
    y, nw, y2 = ort_run(model, {"x": X})
    w_np = w.data
    np.testing.assert_allclose(y, np.maximum(X * w_np, 0) + X, rtol=1e-6)
    np.testing.assert_allclose(nw, -w_np)
    np.testing.assert_array_equal(y2, y)


def test_outputs_that_are_inputs_or_weights():
    g, x = _graph_x()
    w = g.add_param("w", np.ones((3,), np.float32))
    g.outputs = [x, w]
    model = _export_checked(g)
    got = ort_run(model, {"x": X})
    np.testing.assert_array_equal(got[0], X)
    np.testing.assert_array_equal(got[1], w.data)


def test_slice_negative_step_to_start_and_resize_sizes():
    g, x = _graph_x((1, 1, 3, 5))
    s = _emit(g, "Slice", [x], {"starts": [4], "ends": [-1], "axes": [3], "steps": [-1]})
    # sizes that floor(in*scale) cannot reproduce from the stored scales: exported as sizes
    r = _emit(g, "Resize", [s], {"sizes": [1, 1, 7, 10], "scales": [1.0, 1.0, 2.3, 2.0],
                                 "mode": "nearest",
                                 "coordinate_transformation_mode": "asymmetric",
                                 "nearest_mode": "floor"})
    g.outputs = [s, r]
    from edgecc.kernels import run_graph
    xv = np.arange(15, dtype=np.float32).reshape(1, 1, 3, 5)
    want = run_graph(g, {"x": xv})
    got = ort_run(_export_checked(g), {"x": xv})
    np.testing.assert_array_equal(got[0], xv[..., ::-1])
    assert got[1].shape == (1, 1, 7, 10)
    np.testing.assert_array_equal(got[0], want[0])


def test_pad_wrap_needs_opset19():
    g, x = _graph_x()
    g.outputs = [_emit(g, "Pad", [x], {"pads": [0, 1, 0, 2], "mode": "wrap"}, name="p")]
    with pytest.raises(ModelError, match="node 'p' \\(Pad\\).*opset >= 19"):
        export_onnx(g, 18)
    (got,) = ort_run(_export_checked(g, 19), {"x": X})
    np.testing.assert_array_equal(got, np.pad(X, [(0, 0), (1, 2)], mode="wrap"))


# ---- zoo models: import -> export -> onnxruntime, optimized or not ---------------------------------
def _zoo_params():
    return [pytest.param(n, marks=() if n in FAST_ZOO else pytest.mark.slow) for n in zoo.ZOO]


def _feeds(name):
    shapes = zoo.default_input_shapes(name)
    if name.startswith("ppocr"):       # real images: noise makes the detector's output ~1e-3
        (x,) = shapes
        return {x: zoo.text_image(*shapes[x][2:])}
    return zoo.sample_inputs(name, seed=0)


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_round_trip(name, zoo_path):
    path = str(zoo_path(name))
    feeds = _feeds(name)
    ref = ort_run(path, feeds)
    got = ort_run(export_onnx(import_onnx(path, zoo.default_input_shapes(name))), feeds)
    for r, o in zip(ref, got):
        assert rel_err(r, o) <= 1e-5


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_optimized_round_trip(name, zoo_path):
    from edgecc.pass_manager import PassManager, pipeline
    path = str(zoo_path(name))
    feeds = _feeds(name)
    graph = import_onnx(path, zoo.default_input_shapes(name))
    PassManager(pipeline(3), target=AVX512).run(graph)
    assert "Fused" in graph.op_counts()
    model = _export_checked(graph)
    ref = ort_run(path, feeds)
    got = ort_run(model, feeds)
    for r, o in zip(ref, got):
        assert rel_err(r, o) <= 1e-4


def test_quantized_values_are_refused():
    from edgecc.ir import QuantParams
    g, x = _graph_x()
    y = _emit(g, "Relu", [x], name="r")
    y.type = TensorType("i8", y.type.shape, QuantParams((0.1,), (0,)))
    g.outputs = [y]
    with pytest.raises(ModelError, match="node 'r' \\(Relu\\).*quantized"):
        export_onnx(g)
