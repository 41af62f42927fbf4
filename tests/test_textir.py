"""Text IR: print -> parse -> print is the identity; parse errors are located ModelErrors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecc.errors import ModelError, UsageError
from edgecc.ir import Graph, QuantParams, TensorType, Value
from edgecc.ops import build_op
from edgecc.ops.layout import NCHW
from edgecc.textir import (generated_data, load_module, parse_graph, print_graph, save_module,
                           weights_path)
from tests.targets import AVX512


def f32(*shape):
    return TensorType("f32", shape)


def _weights(g: Graph) -> dict:
    return {p.name: p.data for p in g.params}


def roundtrip(g: Graph) -> str:
    text = print_graph(g)
    g2 = parse_graph(text, "rt.eir", _weights(g))
    assert print_graph(g2) == text
    return text


def _graph_with(ops_builder) -> Graph:
    """A graph with input %x: f32[1,4,6,6]; ops_builder(g, x) appends ops, returns outputs."""
    g = Graph("t")
    x = Value("x", f32(1, 4, 6, 6))
    g.inputs.append(x)
    g.outputs = ops_builder(g, x)
    return g


def add(g, kind, inputs, attrs=None, outs=None, name=""):
    op = build_op(kind, inputs, attrs, name=name, out_names=outs or [g.fresh_name(kind.lower())])
    g.ops.append(op)
    return op.outputs


# ---- round trips of hand-made graphs --------------------------------------------------------

def test_roundtrip_every_attribute_kind():
    def build(g, x):
        w = g.add_param("w", np.ones((8, 4, 3, 3), np.float32))
        c, = add(g, "Conv", [x, w, None], {"pads": [1, 1, 1, 1]}, name="conv1")   # _ operand
        l, = add(g, "LeakyRelu", [c], {"alpha": 0.1})                             # float
        cl, = add(g, "Clip", [l], {"min": -math.inf, "max": 6.0})                 # inf
        p, = add(g, "Pad", [cl], {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "mode": "reflect",
                                  "value": float("nan")})                          # str, nan
        k, = add(g, "Cast", [p], {"to": "i64"})                                    # dtype name
        r, = add(g, "Resize", [cl], {"sizes": [1, 8, 12, 12], "mode": "linear"})  # floats list
        y = add(g, "LSTM", [add(g, "Reshape", [x], {"shape": [4, 6, 6]})[0],
                            g.add_param("lw", np.zeros((2, 12, 6), np.float32)),
                            g.add_param("lr", np.zeros((2, 12, 3), np.float32))],
                {"direction": "bidirectional"}, outs=["Y", "Y_h", "Y_c"])          # str list
        return [k, r, y[1]]
    g = _graph_with(build)
    text = roundtrip(g)
    assert "Conv(%x, %w, _)" in text
    assert "min=-inf" in text and "value=nan" in text and "to=i64" in text
    assert 'mode="reflect"' in text and '"Sigmoid","Tanh","Tanh"' in text
    assert 'loc("conv1")' in text


def test_floats_roundtrip_exactly():
    for v in [0.1, 1e-05, 1 / 3, 1e300, -0.0, 5e-324, math.inf, -math.inf]:
        def build(g, x, v=v):
            return add(g, "LeakyRelu", [x], {"alpha": v})
        g = _graph_with(build)
        g2 = parse_graph(roundtrip(g), weights={})
        got = g2.ops[0].attrs["alpha"]
        assert got == v and math.copysign(1, got) == math.copysign(1, v)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(min_size=0, max_size=12), min_size=3, max_size=3, unique=True),
       alpha=st.floats(allow_nan=True, allow_infinity=True),
       label=st.text(max_size=20))
def test_roundtrip_property(names, alpha, label):
    """Any value / node / graph names, any float, any string survive print -> parse."""
    g = Graph(names[0])
    x = Value(names[1], f32(2))
    g.inputs.append(x)
    y, = add(g, "LeakyRelu", [x], {"alpha": alpha}, outs=[names[2]], name=label)
    body = Graph(label)
    p = Value(names[0], f32(2))
    body.inputs = [p]
    body.outputs = add(body, "Neg", [p], outs=[names[1]])
    f, = add(g, "Fused", [y], {"body": body, "kernel": label}, outs=[names[0]])
    g.outputs = [f, y]
    g2 = parse_graph(roundtrip(g))
    assert [v.name for v in g2.outputs] == [names[0], names[2]] and g2.name == names[0]
    got = g2.ops[0].attrs["alpha"]
    assert got == alpha or (math.isnan(got) and math.isnan(alpha))
    assert g2.ops[1].attrs["kernel"] == label and g2.ops[0].name == label


def test_dense_tensor_attribute_and_inline_param():
    text = """graph @t(%x: f32[2,3]) -> (%y: f32[2,3]) {
  params {
    %s: f32[3] = dense<f32[3]: [0.5,-inf,1e-07]>
    %i: i64[2,2] = dense<i64[2,2]: [1,-2,3,4]>
    %b: bool[] = dense<bool[]: true>
    %k: f32[2] = dense<f32[2]: 7.0>
  }
  %y = Mul(%x, %s) : f32[2,3]
  return %y
}
"""
    g = parse_graph(text)
    assert g.param("s").data.tolist() == [0.5, -math.inf, np.float32(1e-07)]
    assert g.param("i").data.tolist() == [[1, -2], [3, 4]]
    assert g.param("b").data.dtype == np.bool_ and g.param("b").data.shape == ()
    assert g.param("k").data.tolist() == [7.0, 7.0]
    # a numpy array attribute prints as dense<...> and reads back bit-exactly
    from edgecc.textir import _fmt_attr
    a = np.array([[0.1, np.nan], [3.4028235e38, -1e-45]], np.float32)
    g2 = parse_graph(f"graph @t() -> () {{\n  params {{\n    %p: f32[2,2] = {_fmt_attr(a)}\n"
                     f"  }}\n  return\n}}\n")
    assert g2.params[0].data.tobytes() == a.tobytes()


def test_weird_names_are_quoted():
    g = Graph("gpu_0/net:v1")
    x = Value("gpu_0/data_0", f32(1, 4))
    g.inputs.append(x)
    a, = add(g, "Relu", [x], outs=['we"ird\\name'], name="node/with:colon")
    b, = add(g, "Neg", [a], outs=["ünï.cödé-1"])
    c, = add(g, "Abs", [b], outs=[""])
    g.outputs = [c, x]
    text = roundtrip(g)
    assert '@"gpu_0/net:v1"' in text and '%"gpu_0/data_0"' in text
    assert '%"we\\"ird\\\\name"' in text and '%""' in text
    g2 = parse_graph(text)
    assert [v.name for v in g2.outputs] == ["", "gpu_0/data_0"]
    assert g2.ops[0].name == "node/with:colon"


def test_fused_body_and_multi_output():
    body = Graph("conv_relu_body")
    p0, p1 = Value("p0", f32(1, 4, 6, 6)), Value("p1", f32(8, 4, 1, 1))
    body.inputs = [p0, p1]
    t, = add(body, "Conv", [p0, p1], outs=["t"])
    u, = add(body, "Relu", [t], outs=["u"])
    body.outputs = [u, t]

    def build(g, x):
        w = g.add_param("w", np.ones((8, 4, 1, 1), np.float32))
        s = add(g, "Split", [x], {"axis": 1, "split": [1, 3]}, outs=["s0", "s1"])
        f = add(g, "Fused", [x, w], {"body": body, "kernel": "conv_relu"}, outs=["p0", "f1"],
                name="fused/1")
        return [f[0], f[1], s[1]]
    g = _graph_with(build)
    text = roundtrip(g)
    assert "^conv_relu_body(%p0: f32[1,4,6,6], %p1: f32[8,4,1,1]):" in text
    assert "%s0, %s1 = Split(%x) {axis=1, split=[1,3]} : f32[1,1,6,6], f32[1,3,6,6]" in text
    g2 = parse_graph(text)
    fused = g2.ops[1]
    assert fused.attrs["body"].name == "conv_relu_body"
    assert [o.kind for o in fused.attrs["body"].ops] == ["Conv", "Relu"]
    # body and outer scope are separate: %p0 names an outer result and a body argument
    assert fused.outputs[0].name == "p0"


def test_quantized_types_roundtrip():
    g = Graph("q")
    x = Value("x", TensorType("i8", (1, 4), QuantParams((0.5,), (3,))))
    g.inputs.append(x)
    y, = add(g, "Identity", [x], outs=["y"])
    y.type = TensorType("i8", (1, 4), QuantParams((0.25, 0.5, 1.0, 2.0), (0, 0, 0, 0), axis=1))
    g.outputs = [y]
    text = roundtrip(g)
    assert "i8[1,4]<scale=[0.5], zero_point=[3]>" in text
    assert parse_graph(text).outputs[0].type == y.type


def test_parse_fills_defaults_and_infers():
    text = """graph @t(%x: f32[1,3,8,8]) -> (%y: f32[1,4,4,4]) {
  params {
    %w: f32[4,3,3,3]
  }
  %y = Conv(%x, %w) {strides=[2,2], pads=[1,1,1,1]} : f32[1,4,4,4]
  return %y
}
"""
    op = parse_graph(text).ops[0]
    assert op.attrs == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                        "dilations": [1, 1], "group": 1, "layout": NCHW}
    assert op.loc == "<string>:5:8"


# ---- weights --------------------------------------------------------------------------------

def test_generated_weights_are_deterministic():
    a = generated_data("w", f32(3, 4))
    assert np.array_equal(a, generated_data("w", f32(3, 4)))
    assert not np.array_equal(a, generated_data("v", f32(3, 4)))
    assert a.dtype == np.float32 and np.all(np.abs(a) <= 1)


def test_save_and_load_module(tmp_path):
    def build(g, x):
        w = g.add_param("gpu_0/conv1_w_0", np.arange(32, dtype=np.float32).reshape(8, 4, 1, 1))
        return add(g, "Conv", [x, w], name="conv1")
    g = _graph_with(build)
    save_module(g, tmp_path / "m.eir")
    assert weights_path(tmp_path / "m.eir") == tmp_path / "m.weights.npz"
    first = (tmp_path / "m.weights.npz").read_bytes()
    save_module(g, tmp_path / "m.eir")
    assert (tmp_path / "m.weights.npz").read_bytes() == first        # deterministic bytes
    g2 = load_module(tmp_path / "m.eir")
    assert np.array_equal(g2.params[0].data, g.params[0].data)
    assert print_graph(g2) == print_graph(g)


def test_load_module_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_module(tmp_path / "missing.eir")
    (tmp_path / "m.eir").write_text("graph @t() -> () {\n  params {\n    %w: f32[2]\n  }\n"
                                    "  return\n}\n")
    np.savez(tmp_path / "m.weights.npz", w=np.zeros(3, np.float32))
    with pytest.raises(ModelError, match=r"m.eir:3:5: param %w is declared f32\[2\] but its "
                                         r"data is float32\[3\]"):
        load_module(tmp_path / "m.eir")
    np.savez(tmp_path / "m.weights.npz", v=np.zeros(2, np.float32))
    with pytest.raises(ModelError, match="m.eir:3:5: no weights for param %w"):
        load_module(tmp_path / "m.eir")


# ---- errors ---------------------------------------------------------------------------------

BASE = """graph @g(%x: f32[1,4]) -> (%y: f32[1,4]) {
  %y = Relu(%x) : f32[1,4]
  return %y
}
"""


@pytest.mark.parametrize("old,new,expected", [
    ("Relu", "Frob", "t.eir:2:8: unknown op 'Frob'"),
    ("Relu(%x)", "Relu(%z)", "t.eir:2:13: undefined value %z"),
    (": f32[1,4]\n  return", ": f32[1,5]\n  return",
     "t.eir:2:19: Relu: type mismatch: result %y is declared f32[1,5] but the op produces "
     "f32[1,4]"),
    ("Relu(%x)", "Relu(%x) {alpha=1.0}", "t.eir:2:18: unknown attribute 'alpha' for Relu"),
    ("Relu(%x)", "LeakyRelu(%x) {alpha=foo}", "t.eir:2:29: bad attribute value 'foo'"),
    ("Relu(%x)", "LeakyRelu(%x) {alpha=1.0, alpha=2.0}", "t.eir:2:34: attribute 'alpha' given"),
    ("Relu(%x)", 'Cast(%x) {to="f99"}', "t.eir:2:18: Cast: to='f99' is not an element type"),
    ("Relu(%x) : f32[1,4]", 'Softmax(%x) {axis=5} : f32[1,4] loc("sm")',
     "t.eir:2:21: node 'sm' (Softmax): Softmax: axis axis=5 is out of range"),
    ("Relu(%x)", "Relu(%x, %x)", "t.eir:2:8: Relu takes 1..1 operands, got 2"),
    ("Relu(%x)", "Relu(%x", "t.eir:2:16: unexpected ':'; expected ')', ','"),
    ("Relu", "Relu#", "t.eir:2:12: unexpected character '#'"),
    ("f32[1,4])", "f31[1,4])", "t.eir:1:14: unknown element type 'f31'"),
    ("%y = Relu", "%x = Relu", "t.eir:2:3: value %x is already defined at t.eir:1:10"),
    ("return %y", "return %x", "t.eir:3:3: graph @g declares result %y: f32[1,4] but returns "
                               "%x: f32[1,4]"),
    ("%y = Relu", '%"y\\q" = Relu', 't.eir:2:3: bad quoted name "y\\q"'),
    ("Relu(%x) : f32[1,4]", "Relu(%x) : f32[1,4], f32[1,4]", "t.eir:2:8: Relu: 1 result(s) "
                                                             "but 2 type(s)"),
    ("}\n", "", "t.eir:4:1: unexpected end of file"),
    ("f32[1,4]\n", 'f32[1,4] loc("a\\q")\n', 't.eir:2:32: bad string "a\\q"'),
])
def test_parse_errors_are_located(old, new, expected):
    text = BASE.replace(old, new, 1)
    assert text != BASE
    with pytest.raises(ModelError) as info:
        parse_graph(text, "t.eir")
    assert info.value.message.startswith(expected), info.value.message
    assert info.value.exit_code == 2


def test_fused_body_cannot_see_outer_values():
    text = """graph @g(%x: f32[1,4]) -> (%y: f32[1,4]) {
  %y = Fused(%x) : f32[1,4] {
    ^b(%p: f32[1,4]):
    %t = Add(%p, %x) : f32[1,4]
    return %t
  }
  return %y
}
"""
    with pytest.raises(ModelError, match=r"t.eir:4:18: undefined value %x \(a body sees only"):
        parse_graph(text, "t.eir")


# ---- the zoo --------------------------------------------------------------------------------

def _zoo_roundtrip(name, zoo_path, tmp_path_factory):
    zoo = pytest.importorskip("edgecc.zoo")
    from edgecc.onnx_import import import_onnx
    g = import_onnx(str(zoo_path(name)), zoo.default_input_shapes(name))
    roundtrip(g)
    out = tmp_path_factory.mktemp(name) / f"{name}.eir"
    save_module(g, out)
    assert print_graph(load_module(out)) == print_graph(g)


@pytest.mark.parametrize("name", ["squeezenet", "ppocr_cls"])
def test_zoo_roundtrip(name, zoo_path, tmp_path_factory):
    _zoo_roundtrip(name, zoo_path, tmp_path_factory)


def test_optimized_zoo_roundtrip(zoo_path):
    """-O3 output (Fused ops with bodies, new weights) round-trips too."""
    zoo = pytest.importorskip("edgecc.zoo")
    from edgecc.onnx_import import import_onnx
    from edgecc.pass_manager import PassManager, pipeline
    g = import_onnx(str(zoo_path("squeezenet")), zoo.default_input_shapes("squeezenet"))
    g = PassManager(pipeline(3), target=AVX512).run(g)
    assert "Fused(" in roundtrip(g)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "shufflenet", "inception_v1", "inception_v2",
                                  "densenet121", "vgg19", "bvlc_alexnet", "zfnet512",
                                  "ppocr_det"])
def test_zoo_roundtrip_slow(name, zoo_path, tmp_path_factory):
    _zoo_roundtrip(name, zoo_path, tmp_path_factory)
