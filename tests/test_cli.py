"""The `edgecc` command line: exit codes, messages and output safety (CONTRACT.md)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper


def edgecc(*args, cwd=None):
    env = dict(os.environ)
    env.pop("EDGECC_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "edgecc.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def tiny_model(path: Path, op_type="Relu", extra_nodes=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node(op_type, ["x"], ["y"], name="first")] + list(extra_nodes)
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def test_help_and_version():
    proc = edgecc("--help")
    assert proc.returncode == 0 and "--target" in proc.stdout and "exit codes" in proc.stdout
    for sub in ("run", "check"):
        proc = edgecc(sub, "--help")
        assert proc.returncode == 0 and "usage: edgecc " + sub in proc.stdout
    assert edgecc("--version").stdout.startswith("edgecc ")


def test_missing_file_is_usage_error(tmp_path):
    proc = edgecc(tmp_path / "nope.onnx")
    assert proc.returncode == 1
    assert "nope.onnx: no such file" in proc.stderr


def test_directory_is_usage_error(tmp_path):
    proc = edgecc(tmp_path)
    assert proc.returncode == 1 and "is a directory" in proc.stderr


def test_unknown_flag_is_usage_error(tmp_path):
    proc = edgecc(tiny_model(tmp_path / "m.onnx"), "--frobnicate")
    assert proc.returncode == 1 and "unrecognized arguments: --frobnicate" in proc.stderr


@pytest.mark.parametrize("spec, message", [
    ("x", "must look like name=d0,d1"),
    ("x=1,a", "dims must be integers"),
    ("x=1,-4", "every dim must be positive"),
])
def test_bad_input_shape_syntax(tmp_path, spec, message):
    proc = edgecc(tiny_model(tmp_path / "m.onnx"), "--input-shape", spec, "--emit", "ir")
    assert proc.returncode == 1 and message in proc.stderr


def test_truncated_model_is_model_error(tmp_path, zoo_path):
    data = Path(zoo_path("squeezenet")).read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 3])
    proc = edgecc(bad, "--emit", "ir", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "truncated.onnx" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unsupported_ops_listed_at_once(tmp_path):
    extra = [helper.make_node("Frobnicate", ["y"], ["z1"], name="frob_a"),
             helper.make_node("NonMaxSuppression", ["z1"], ["z2"], name="nms_b")]
    path = tiny_model(tmp_path / "m.onnx", extra_nodes=extra)
    proc = edgecc(path, "--emit", "ir", "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert "frob_a" in proc.stderr and "Frobnicate" in proc.stderr
    assert "nms_b" in proc.stderr and "NonMaxSuppression" in proc.stderr


def test_failed_build_leaves_existing_outdir_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    path = tiny_model(tmp_path / "m.onnx", op_type="Frobnicate")
    proc = edgecc(path, "-o", out)
    assert proc.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_emit_ir_writes_module(tmp_path, zoo_path):
    proc = edgecc(zoo_path("ppocr_cls"), "--input-shape", "x=1,3,48,192", "--emit", "ir",
                  "-O1", "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    stem = Path(zoo_path("ppocr_cls")).stem
    text = (tmp_path / f"{stem}.eir").read_text()
    assert text.startswith("graph @") and "Conv(" in text
    assert (tmp_path / f"{stem}.weights.npz").is_file()


def test_check_matches_onnxruntime_and_reports_mismatch(tmp_path, zoo_path):
    proc = edgecc("check", zoo_path("ppocr_cls"), "--input-shape", "x=1,3,48,192")
    assert proc.returncode == 0, proc.stderr
    assert "rel to scale" in proc.stdout and "ok" in proc.stdout
    # an impossible tolerance must turn into the numeric-failure exit code
    proc = edgecc("check", zoo_path("ppocr_cls"), "--input-shape", "x=1,3,48,192",
                  "--tolerance", "0")
    assert proc.returncode == 3 and "differs from onnxruntime" in proc.stderr


def test_check_rejects_wrong_input_shape(tmp_path, zoo_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 10, 10), np.float32))
    proc = edgecc("check", zoo_path("ppocr_cls"), "--input-shape", "x=1,3,48,192",
                  "--input", f"x={tmp_path / 'x.npy'}")
    assert proc.returncode == 1 and "expects [1, 3, 48, 192]" in proc.stderr


def test_readme_lists_the_pipelines_the_code_runs():
    from edgecc.pass_manager import describe_pipelines
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    documented = [line for line in readme.splitlines() if line.startswith("  -O")]
    actual = [line for line in describe_pipelines().splitlines() if line.startswith("  -O")]
    assert documented == actual
