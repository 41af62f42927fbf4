"""The model zoo: the 11 models are there, materialized weights are seeded, realistic and
deterministic, inputs are what the models expect, and text_image looks like text to PP-OCR."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgecc import zoo
from edgecc.errors import UsageError

LIGHT = [n for n, m in zoo.ZOO.items() if m.light]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_the_eleven_models():
    assert sorted(zoo.ZOO) == sorted([
        "resnet50", "squeezenet", "shufflenet", "inception_v1", "inception_v2", "densenet121",
        "vgg19", "bvlc_alexnet", "zfnet512", "ppocr_det", "ppocr_cls"])
    for name in zoo.ZOO:
        assert zoo.source_path(name).is_file(), name


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_default_shapes_match_model_inputs(name):
    model = onnx.load(str(zoo.source_path(name)), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    shapes = zoo.default_input_shapes(name)
    assert [i.name for i in real] == list(shapes)
    dims = [d.dim_value for d in real[0].type.tensor_type.shape.dim]
    (shape,) = shapes.values()
    assert len(dims) == len(shape)
    assert all(d <= 0 or d == s for d, s in zip(dims, shape))   # consistent with static dims
    if name == "ppocr_det":
        assert shape[2] % 32 == 0 and shape[3] % 32 == 0


def test_sample_inputs_seeded():
    a, b = zoo.sample_inputs("squeezenet", 0), zoo.sample_inputs("squeezenet", 0)
    c = zoo.sample_inputs("squeezenet", 1)
    assert list(a) == ["data_0"] and a["data_0"].dtype == np.float32
    assert a["data_0"].shape == (1, 3, 224, 224)
    np.testing.assert_array_equal(a["data_0"], b["data_0"])
    assert not np.array_equal(a["data_0"], c["data_0"])
    x = zoo.sample_inputs("ppocr_cls")["x"]
    assert x.shape == (1, 3, 48, 192) and -1 <= x.min() and x.max() <= 1


def test_unknown_model():
    with pytest.raises(UsageError, match="unknown zoo model 'lenet'.*resnet50"):
        zoo.default_input_shapes("lenet")


def test_ppocr_used_as_is(tmp_path):
    assert zoo.materialize("ppocr_cls", tmp_path) == zoo.source_path("ppocr_cls")
    assert not list(tmp_path.iterdir())


def test_shared_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECC_SHARED", str(tmp_path))
    assert zoo.source_path("ppocr_det") == tmp_path / "models" / "ch_PP-OCRv4_det_infer.onnx"
    with pytest.raises(UsageError, match="EDGECC_SHARED"):
        zoo.materialize("ppocr_det", tmp_path)


def test_shared_dir_default_is_beside_repo(monkeypatch):
    monkeypatch.delenv("EDGECC_SHARED", raising=False)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(zoo.__file__)))
    assert zoo.shared_dir() == zoo.Path(repo).parent / "shared"


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_materialize_deterministic_and_cached(name, tmp_path):
    a = zoo.materialize(name, tmp_path / "a")
    b = zoo.materialize(name, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    mtime = a.stat().st_mtime_ns
    assert zoo.materialize(name, tmp_path / "a") == a and a.stat().st_mtime_ns == mtime


def _weights(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "densenet121"])
def test_weights_realistic_by_role(name, zoo_path):
    model = onnx.load(str(zoo_path(name)))
    assert "ConstantOfShape" not in {n.op_type for n in model.graph.node}
    w = _weights(model)
    source = onnx.load(str(zoo.source_path(name)))
    drawn = {n.output[0] for n in source.graph.node if n.op_type == "ConstantOfShape"}
    seen = set()
    for n in model.graph.node:
        if n.op_type == "Conv" and n.input[1] in drawn:
            k = w[n.input[1]]
            if k.size >= 1000:
                fan_in = np.prod(k.shape[1:])
                assert abs(k.std() / np.sqrt(2 / fan_in) - 1) < 0.15, n.input[1]
                seen.add("conv")
        if n.op_type == "BatchNormalization" and n.input[1] in w:
            scale, var = w[n.input[1]], w[n.input[4]]
            if n.input[1] in drawn:              # shipped values stay as they are
                assert 0.5 <= scale.min() and scale.max() <= 1.5
            assert var.min() > 0
            seen.add("bn")
    assert "conv" in seen


def _activation_stds(path, feeds):
    model = onnx.load(str(path))
    names = [o for n in model.graph.node if n.op_type in ("Conv", "Gemm") for o in n.output]
    del model.graph.output[:]
    for o in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT,
                                                                     None))
    outs = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    return [float(np.std(o)) for o in outs]


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in ("squeezenet", "shufflenet")
                                               else pytest.mark.slow) for n in LIGHT])
def test_activations_stay_order_one(name, zoo_path):
    stds = _activation_stds(zoo_path(name), zoo.sample_inputs(name))
    print(f"{name}: conv/gemm output std in [{min(stds):.3g}, {max(stds):.3g}]")
    assert 0.05 < min(stds) and max(stds) < 30
    if onnx.load(str(zoo_path(name))).graph.node[-1].op_type == "Softmax":
        (probs,) = _session(zoo_path(name)).run(None, zoo.sample_inputs(name))
        assert probs.max() < 0.999      # softmax not saturated: logits are O(1)-O(10)


def test_text_image():
    x = zoo.text_image(48, 192)
    assert x.shape == (1, 3, 48, 192) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0                  # black text, white paper
    ink = (x[0, 0] < 0).mean()
    assert 0.02 < ink < 0.4
    np.testing.assert_array_equal(x, zoo.text_image(48, 192))
    assert np.array_equal(x[0, 0], x[0, 1]) and np.array_equal(x[0, 0], x[0, 2])
    big = zoo.text_image(320, 320)
    rows_with_ink = (big[0, 0] < 0).any(axis=1).mean()
    assert rows_with_ink > 0.4                                  # several lines of text


def test_ppocr_reads_text_image():
    """The real models see text: the classifier is sure it is upright (and flipped when we
    rotate it 180°); the detector finds text pixels, and none on a blank page."""
    cls = _session(zoo.source_path("ppocr_cls"))
    x = zoo.text_image(48, 192)
    (upright,) = cls.run(None, {"x": x})
    (rotated,) = cls.run(None, {"x": np.ascontiguousarray(x[..., ::-1, ::-1])})
    assert upright[0, 0] > 0.9 and rotated[0, 1] > 0.9
    det = _session(zoo.source_path("ppocr_det"))
    (text,) = det.run(None, {"x": zoo.text_image(320, 320)})
    (blank,) = det.run(None, {"x": np.ones((1, 3, 320, 320), np.float32)})
    assert (text > 0.3).mean() > 0.05 and (blank > 0.3).mean() == 0.0


def test_command_line(tmp_path, capsys):
    assert zoo.main(["-o", str(tmp_path), "squeezenet", "ppocr_cls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["squeezenet", str(tmp_path / f"squeezenet-r{zoo._RECIPE}.onnx"),
                                    "--input-shape data_0=1,3,224,224"]
    assert lines[1].startswith("ppocr_cls\t")
    assert zoo.main(["lenet"]) == 1
    assert "unknown zoo model 'lenet'" in capsys.readouterr().err
