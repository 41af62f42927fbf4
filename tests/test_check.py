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
