"""Ops added on the op traits (each: its @opdef, its reference kernel, its TVM lowering and this
test; ONNX import and export come from onnx="same"): TopK (detection post-processing), Mish
(YOLOv4-style activations), GroupNormalization (diffusion / detection heads), GridSample
(spatial transformers, deformable sampling); and forms added to existing ops: AveragePool with
dilations (opset 19), Resize with antialias and tf_crop_and_resize. Each is imported from ONNX, checked against the
ONNX reference evaluator (and onnxruntime where the two agree), compiled into a bundle and
exported back to ONNX."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.reference
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import edgecc
from edgecc.kernels import run_graph
from edgecc.onnx_export import export_onnx
from edgecc.onnx_import import import_onnx
from edgecc.textir import parse_graph, print_graph
from tests.targets import FAST

RNG = np.random.default_rng(5)


def model(node, inputs: dict, inits: dict, opset: int, out_types=(TensorProto.FLOAT,)):
    """(a one-node ONNX model whose graph inputs are `inputs`' names, its feeds)."""
    vi = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
          for n, a in inputs.items()]
    outs = [helper.make_tensor_value_info(o, t, None) for o, t in zip(node.output, out_types)]
    init = [onnx.numpy_helper.from_array(a, n) for n, a in inits.items()]
    m = helper.make_model(helper.make_graph([node], "g", vi, outs, init),
                          opset_imports=[helper.make_opsetid("", opset)])
    return m, inputs


def topk(largest):
    x = RNG.standard_normal((2, 3, 17)).astype(np.float32)
    x[0, 0, :4] = [1.5, np.nan, 1.5, -np.inf]                    # ties, NaN, inf
    return model(helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=largest),
                 {"x": x}, {"k": np.array([5], np.int64)}, 11,
                 (TensorProto.FLOAT, TensorProto.INT64))


def mish():
    x = np.concatenate([RNG.standard_normal(40) * 4, [-100, -30, 0, 30, 100]]).astype(np.float32)
    return model(helper.make_node("Mish", ["x"], ["y"]), {"x": x.reshape(5, 9)}, {}, 18)


def group_norm(per_group):
    x = RNG.standard_normal((2, 8, 5, 6)).astype(np.float32)
    n = 4 if per_group else 8
    s, b = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    return model(helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=4,
                                  epsilon=1e-3), {"x": x}, {"s": s, "b": b},
                 18 if per_group else 21)


def grid_sample(mode, padding, align, opset):
    x = RNG.standard_normal((2, 3, 6, 9)).astype(np.float32)
    grid = RNG.uniform(-1.4, 1.4, (2, 5, 4, 2)).astype(np.float32)
    grid[0, 0, 0], grid[1, 4, 3] = [1.0, -1.0], [-3.2, 4.9]      # corners, far outside
    if opset >= 20:                        # opset 20 renamed bilinear / bicubic
        mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    return model(helper.make_node("GridSample", ["x", "g"], ["y"], mode=mode,
                                  padding_mode=padding, align_corners=align),
                 {"x": x, "g": grid}, {}, opset)


def avgpool_dilated(include_pad):
    x = RNG.standard_normal((1, 3, 11, 10)).astype(np.float32)
    return model(helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2],
                                  strides=[2, 1], dilations=[2, 3], pads=[2, 1, 1, 1],
                                  ceil_mode=1, count_include_pad=include_pad),
                 {"x": x}, {}, 19)


def resize_antialias(mode, exclude):
    x = RNG.standard_normal((1, 3, 24, 30)).astype(np.float32)
    return model(helper.make_node("Resize", ["x", "", "s"], ["y"], mode=mode, antialias=1,
                                  exclude_outside=exclude),
                 {"x": x}, {"s": np.array([1, 1, 0.3, 0.45], np.float32)}, 18)


def resize_crop(mode, axes=None):
    x = RNG.standard_normal((1, 2, 7, 9)).astype(np.float32)
    roi = [0.0, 0.0, -0.2, 0.1, 1.0, 1.0, 0.9, 1.3]
    sizes = [1, 2, 6, 5]
    kw = {}
    if axes:                                # opset 18: roi and sizes for the listed axes only
        roi = [roi[a] for a in axes] + [roi[4 + a] for a in axes]
        sizes, kw = [sizes[a] for a in axes], {"axes": axes}
    return model(helper.make_node("Resize", ["x", "roi", "", "sz"], ["y"], mode=mode,
                                  coordinate_transformation_mode="tf_crop_and_resize",
                                  extrapolation_value=7.0, **kw),
                 {"x": x}, {"roi": np.array(roi, np.float32),
                            "sz": np.array(sizes, np.int64)}, 18)


CASES = {
    "resize_antialias_linear": resize_antialias("linear", 0),
    "resize_antialias_cubic_exclude_outside": resize_antialias("cubic", 1),
    "resize_crop_nearest": resize_crop("nearest"), "resize_crop_linear": resize_crop("linear"),
    "resize_crop_cubic_axes_3_2": resize_crop("cubic", [3, 2]),
    "avgpool_dilated_include_pad_0": avgpool_dilated(0),
    "avgpool_dilated_include_pad_1": avgpool_dilated(1),
    "topk_largest": topk(1), "topk_smallest": topk(0), "mish": mish(),
    "group_norm_per_channel": group_norm(False), "group_norm_per_group_opset18": group_norm(True),
    **{f"grid_{m}_{p}_{a}": grid_sample(m, p, a, 16)
       for m in ("bilinear", "nearest", "bicubic") for p in ("zeros", "border", "reflection")
       for a in (0, 1)},
    "grid_opset20_linear": grid_sample("bilinear", "reflection", 0, 20),
}
# onnxruntime's bicubic GridSample with border padding departs from the ONNX reference (up
# to 0.28 here); edgecc follows the reference. onnxruntime runs opset 20's spellings of the
# modes (linear / cubic) not at all.
ORT_DIFFERS = {"grid_bicubic_border_0", "grid_bicubic_border_1", "grid_opset20_linear"}


def run_onnx_reference(m, feeds):
    """The ONNX reference evaluator's outputs (its GridSample knows opset 20's mode names
    only: older models are given them)."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    for node in m2.graph.node:
        for a in node.attribute:
            if node.op_type == "GridSample" and a.name == "mode":
                a.s = {b"bilinear": b"linear", b"bicubic": b"cubic"}.get(a.s, a.s)
    return onnx.reference.ReferenceEvaluator(m2).run(None, feeds)


def close(got, want, what):
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True,
                                   err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    """(name, model, its file, feeds)."""
    name = request.param
    m, feeds = CASES[name]
    path = tmp_path_factory.mktemp(name) / f"{name}.onnx"
    onnx.save(m, path)
    return name, m, path, feeds


def test_reference_matches_the_onnx_reference(case):
    name, m, path, feeds = case
    graph = import_onnx(str(path))
    want = run_onnx_reference(m, feeds)
    for i, (g, w) in enumerate(zip(run_graph(graph, feeds), want)):
        close(g, w, f"{name} output {i}")
    if name not in ORT_DIFFERS:
        theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, feeds)
        for i, (g, w) in enumerate(zip(run_graph(graph, feeds), theirs)):
            close(g, w, f"{name} output {i} vs onnxruntime")


def family_model(prefix: str):
    """Every case whose name starts with `prefix` as one ONNX model (one bundle compile per
    op family): their nodes side by side, inputs and outputs renamed per case."""
    nodes, inputs, outputs, inits, feeds, opset = [], [], [], [], {}, 0
    for name in sorted(n for n in CASES if n.startswith(prefix)):
        m, f = CASES[name]
        opset = max(opset, m.opset_import[0].version)
        rename = {v: f"{name}_{v}" for v in [i.name for i in m.graph.input] +
                  [o.name for o in m.graph.output] + [t.name for t in m.graph.initializer]}
        for node in m.graph.node:
            n = onnx.NodeProto()
            n.CopyFrom(node)
            n.input[:] = [rename.get(i, i) for i in n.input]
            n.output[:] = [rename.get(o, o) for o in n.output]
            n.name = name
            nodes.append(n)
        for v in list(m.graph.input) + list(m.graph.output):
            c = onnx.ValueInfoProto()
            c.CopyFrom(v)
            c.name = rename[v.name]
            (inputs if v in m.graph.input else outputs).append(c)
        for t in m.graph.initializer:
            inits.append(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t),
                                                      rename[t.name]))
        feeds.update({rename[k]: a for k, a in f.items()})
    g = helper.make_graph(nodes, prefix, inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), feeds


@pytest.mark.parametrize("prefix", ["topk", "mish", "group_norm_per_channel", "grid",
                                    "avgpool", "resize"])
def test_bundle_matches_the_reference(prefix, tmp_path):
    m, feeds = family_model(prefix)
    path = tmp_path / f"{prefix}.onnx"
    onnx.save(m, path)
    graph = import_onnx(str(path))
    art = edgecc.compile(str(path), outdir=str(tmp_path / "b"), mcpu=FAST.mcpu)
    for v, g, w in zip(graph.outputs, art.run(feeds), run_graph(graph, feeds)):
        close(g, w, f"{v.name}: bundle vs reference")


def test_text_ir_and_onnx_export_round_trip(case):
    name, m, path, feeds = case
    graph = import_onnx(str(path))
    text = print_graph(graph)
    assert print_graph(parse_graph(text, weights={p.name: p.data for p in graph.params})) == text
    exported = export_onnx(graph)
    again = ort.InferenceSession(exported.SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, feeds) \
        if name not in ORT_DIFFERS else run_onnx_reference(exported, feeds)
    for i, (g, w) in enumerate(zip(again, run_graph(graph, feeds))):
        close(g, w, f"{name} exported output {i}")


def test_topk_k_must_be_constant_and_in_range(tmp_path):
    from edgecc.errors import ModelError
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])
    k = helper.make_tensor_value_info("k", TensorProto.INT64, [1])
    m = helper.make_model(helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["v", "i"])], "g", [x, k],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(ModelError, match="TopK.*k input is not constant"):
        import_onnx(m)
    too_many, _ = model(helper.make_node("TopK", ["x", "k"], ["v", "i"]),
                        {"x": np.zeros((4, 6), np.float32)}, {"k": np.array([7], np.int64)}, 11)
    with pytest.raises(ModelError, match=r"attribute k=7 is out of range \[0, 6\]"):
        import_onnx(too_many)


def test_group_norm_and_grid_sample_refusals():
    from edgecc.errors import ModelError
    bad_groups, _ = model(helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"],
                                        num_groups=3),
                       {"x": np.zeros((1, 8, 2, 2), np.float32)},
                       {"s": np.ones(8, np.float32), "b": np.zeros(8, np.float32)}, 21)
    with pytest.raises(ModelError, match="8 channels .* not divisible by num_groups=3"):
        import_onnx(bad_groups)
    volumetric, _ = model(helper.make_node("GridSample", ["x", "g"], ["y"]),
                       {"x": np.zeros((1, 2, 3, 4, 5), np.float32),
                        "g": np.zeros((1, 2, 2, 2, 3), np.float32)}, {}, 20)
    with pytest.raises(ModelError, match="only 2-D images"):
        import_onnx(volumetric)
