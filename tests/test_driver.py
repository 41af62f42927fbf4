"""End to end through the user's entry points: edgecc.compile / edgecc.load / `edgecc run`,
report.json, --max-arena, byte-identical rebuilds."""
import filecmp
import json
import subprocess
import sys

import numpy as np
import pytest

import edgecc
from edgecc import zoo
from edgecc.check import onnxruntime_outputs
from edgecc.driver import REPORT_KEYS
from edgecc.numerics import relative_error
from edgecc.kernels import run_graph
from edgecc.onnx_import import import_onnx

SHAPES = {"x": (1, 3, 48, 192)}


@pytest.fixture(scope="module")
def cls_bundle(tmp_path_factory, zoo_path):
    model = zoo_path("ppocr_cls")
    out = tmp_path_factory.mktemp("b") / "cls.x86_64"
    art = edgecc.compile(model, target="x86_64", opt_level=3, outdir=str(out),
                         input_shapes=SHAPES)
    return model, art


def test_compile_run_matches_reference_and_onnxruntime(cls_bundle):
    model, art = cls_bundle
    feeds = {"x": zoo.text_image(48, 192)}
    got = art.run(feeds)
    ref = run_graph(import_onnx(str(model), SHAPES), feeds)
    ort = onnxruntime_outputs(str(model), feeds)
    for g, r, o in zip(got, ref, ort):
        assert relative_error(g, r) <= 1e-3
        assert relative_error(g, o) <= 1e-3
    again = edgecc.load(art.path).run(feeds)
    np.testing.assert_array_equal(again[0], got[0])


def test_report_has_contract_keys(cls_bundle):
    _, art = cls_bundle
    report = json.loads((art.path / "report.json").read_text())
    assert list(report)[:len(REPORT_KEYS)] == list(REPORT_KEYS)
    assert report["target"] == "x86_64" and report["opt_level"] == 3
    assert report["ops_after"].get("BatchNormalization", 0) == 0
    assert 0 < report["kernels"] <= report["nodes_after"] < report["nodes_before"]
    assert report["arena_lower_bound_bytes"] <= report["arena_bytes"] <= report["naive_bytes"]
    assert report["params_bytes_after"] <= report["params_bytes_before"]
    assert {p["name"] for p in report["passes"]} >= {"fuse-conv-bn", "fuse-kernels"}


def test_edgecc_run_writes_outputs(cls_bundle, tmp_path):
    _, art = cls_bundle
    x = zoo.text_image(48, 192)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-m", "edgecc.cli", "run", str(art.path),
                           "--input", f"x={tmp_path / 'x.npy'}", "--output-dir",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["save_infer_model_scale_0.tmp_1.npy"]
    np.testing.assert_array_equal(np.load(written[0]), art.run({"x": x})[0])


def test_max_arena_fails_with_exit_4_before_building(zoo_path, tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "edgecc.cli", str(zoo_path("ppocr_cls")),
                           "--input-shape", "x=1,3,48,192", "--max-arena", "1000", "-o",
                           str(out)], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    assert "--max-arena 1000" in proc.stderr and "peak at" in proc.stderr
    assert "-O3" not in proc.stderr           # the default level: nothing to suggest there
    assert "Traceback" not in proc.stderr and not out.exists()


def test_rebuild_is_byte_identical(cls_bundle, tmp_path):
    model, art = cls_bundle
    again = edgecc.compile(model, target="x86_64", opt_level=3, outdir=str(tmp_path / "b2"),
                           input_shapes=SHAPES)
    first = sorted(p.name for p in art.path.iterdir())
    assert first == sorted(p.name for p in again.path.iterdir())
    differing = [n for n in first if n != "report.json"
                 and not filecmp.cmp(art.path / n, again.path / n, shallow=False)]
    assert differing == []
