"""`edgecc check`: agreement with onnxruntime, and float64 arbitration of disagreements."""
import numpy as np
import pytest

from edgecc import check
from edgecc.errors import NumericError

SHAPES = {"x": (1, 3, 48, 192)}


def test_check_passes_on_ppocr_cls(zoo_path):
    lines = []
    assert check.check_model(str(zoo_path("ppocr_cls")), SHAPES, {}, out=lines.append) == 0
    assert lines[1].endswith("  ok") and "vs float64" not in lines[1]


def test_disagreement_goes_to_float64_arbitration(zoo_path, monkeypatch):
    real = check.onnxruntime_outputs
    monkeypatch.setattr(check, "onnxruntime_outputs",
                        lambda *a, **k: [o + 0.01 * np.abs(o).max() for o in real(*a, **k)])
    lines = []
    assert check.check_model(str(zoo_path("ppocr_cls")), SHAPES, {}, out=lines.append) == 0
    assert "onnxruntime is further from the float64 result" in lines[1]


def test_wrong_reference_fails_even_with_arbitration(zoo_path, monkeypatch):
    real = check.run_graph

    def broken_in_fp32(graph, feeds):
        outs = real(graph, feeds)
        return [o * 1.01 if o.dtype == np.float32 else o for o in outs]
    monkeypatch.setattr(check, "run_graph", broken_in_fp32)
    with pytest.raises(NumericError, match="differs from onnxruntime"):
        check.check_model(str(zoo_path("ppocr_cls")), SHAPES, {}, out=lambda s: None)


def test_promote_to_f64_keeps_the_input_graph(zoo_path):
    from edgecc.onnx_import import import_onnx
    g = import_onnx(str(zoo_path("ppocr_cls")), SHAPES)
    g64 = check.promote_to_f64(g)
    assert {v.type.dtype for v in g64.values()} <= {"f64", "i64", "i32", "bool"}
    assert g.inputs[0].type.dtype == "f32" and g.params[0].data.dtype == np.float32


def _resize_model(path, mode, ctm, n_in, n_out, nearest_mode="round_prefer_floor",
                  scale=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("Resize", ["x", "", "s"] if scale else ["x", "", "", "s"], ["y"],
                            mode=mode, coordinate_transformation_mode=ctm,
                            nearest_mode=nearest_mode)
    arg = np.array([1, 1, scale, scale], np.float32) if scale else \
        np.array([1, 1, n_out, n_out], np.int64)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, n_in, n_in])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 1, n_out, n_out])], [numpy_helper.from_array(arg, "s")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


def test_a_different_answer_is_a_mismatch_whatever_float64_says(tmp_path, monkeypatch):
    """A disagreement far larger than rounding (a different pixel read) is not explained by
    the float64 run, which shares the reference executor's semantics: exit 3."""
    path = _resize_model(tmp_path / "r.onnx", "nearest", "half_pixel", 22, 26, "ceil")
    real = check.onnxruntime_outputs
    monkeypatch.setattr(check, "onnxruntime_outputs",
                        lambda *a, **k: [np.roll(o, 1, axis=-1) for o in real(*a, **k)])
    monkeypatch.setattr(check, "onnx_reference_outputs", lambda *a: None)
    with pytest.raises(NumericError, match="differs from onnxruntime"):
        check.check_model(path, {}, {}, out=lambda s: None)


def test_float32_coordinates_agree_with_onnxruntime(tmp_path):
    """Resize nearest half_pixel ceil 22 -> 26: a source coordinate is 5.0 in float64 but
    5.0000005 in float32; the reference decides in float32, as onnxruntime and the kernels do."""
    path = _resize_model(tmp_path / "r.onnx", "nearest", "half_pixel", 22, 26, "ceil")
    lines = []
    assert check.check_model(path, {}, {}, out=lines.append) == 0
    assert lines[1].endswith("  ok") and "rel to scale 0 " in lines[1] + " "


def test_onnxruntime_departing_from_the_specification_is_named(tmp_path):
    """Resize linear align_corners 11 -> 16 (scale 1.5: 11 x 1.5 is not whole): onnxruntime
    departs from the ONNX reference evaluator, which edgecc follows."""
    path = _resize_model(tmp_path / "r.onnx", "linear", "align_corners", 11, 16, scale=1.5)
    lines = []
    assert check.check_model(path, {}, {}, out=lines.append) == 0
    assert "onnxruntime departs from the ONNX reference evaluator" in lines[1], lines
