"""The `edgecc` command line: exit codes, messages and output safety (CONTRACT.md)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgecc as edgecc_api
from edgecc.errors import UsageError


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


@pytest.mark.parametrize("binding", [[], ["--input-shape", "x=1,5,8,8"]])
def test_missing_and_wrong_binding_are_both_usage_errors(zoo_path, tmp_path, binding):
    """Exit 1 either way, with the flag spelled as on the command line."""
    proc = edgecc(zoo_path("ppocr_cls"), *binding, "-o", str(tmp_path / "b"))
    assert proc.returncode == 1, proc.stderr
    assert ("--input-shape x=1,3,<d2>,<d3>" if not binding else "--input-shape x=1,5,8,8:") \
        in proc.stderr
    assert "input_shapes" not in proc.stderr and "Traceback" not in proc.stderr


def test_python_errors_name_python_arguments(zoo_path, tmp_path):
    with pytest.raises(UsageError) as e:
        edgecc_api.compile(zoo_path("ppocr_cls"), outdir=str(tmp_path / "b"))
    assert "input_shapes={'x': (1, 3, <d2>, <d3>)}" in e.value.message
    with pytest.raises(UsageError, match="max_arena=-1: must be a non-negative"):
        edgecc_api.compile(zoo_path("ppocr_cls"), max_arena=-1)
    with pytest.raises(UsageError, match="emit='elf' is not one of|unknown emit='elf'"):
        edgecc_api.compile(zoo_path("ppocr_cls"), emit="elf")


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


@pytest.mark.parametrize("emit,suffix", [("ir", ".eir"), ("onnx", ".onnx")])
def test_emit_uses_name_for_the_file(tmp_path, emit, suffix):
    """--emit ir|onnx writes <outdir>/<name><suffix> when --name is given (CONTRACT), the
    model's stem otherwise."""
    model = tiny_model(tmp_path / "m.onnx")
    proc = edgecc(model, "--emit", emit, "--name", "detector", "-o", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a" / f"detector{suffix}").is_file()
    assert not (tmp_path / "a" / f"m{suffix}").exists()
    proc = edgecc(model, "--emit", emit, "-o", tmp_path / "b")
    assert proc.returncode == 0 and (tmp_path / "b" / f"m{suffix}").is_file()


def test_check_takes_the_shape_from_the_input_array(tmp_path, zoo_path):
    """ppocr_cls has dynamic dims: a given array binds them (no --input-shape needed)."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 160)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = edgecc("check", zoo_path("ppocr_cls"), "--input", f"x={tmp_path / 'x.npy'}")
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout
    np.save(tmp_path / "bad.npy", np.zeros((1, 4, 48, 160), np.float32))     # C is fixed to 3
    proc = edgecc("check", zoo_path("ppocr_cls"), "--input", f"x={tmp_path / 'bad.npy'}")
    assert proc.returncode == 1 and "--input x (an array of shape [1, 4, 48, 160])" in \
        proc.stderr and "fixed to 3" in proc.stderr


def test_run_refuses_files_that_are_not_npy(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    assert edgecc(model, "-O0", "-o", tmp_path / "b").returncode == 0
    (tmp_path / "x.txt").write_text("1 2 3 4")
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4), np.float32))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, says in (("x.txt", "is not a .npy file"), ("x.npz", "is an .npz archive"),
                       ("obj.npy", "holds Python objects")):
        proc = edgecc("run", tmp_path / "b", "--input", f"x={tmp_path / name}")
        assert proc.returncode == 1 and says in proc.stderr, proc.stderr
        assert "allow_pickle" not in proc.stderr


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


def test_demo_ends_with_a_short_summary(tmp_path):
    """README command 1: both targets built and run, then a few readable lines (no JSON)."""
    proc = subprocess.run([sys.executable, "-m", "edgecc.demo", "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) <= 16 and lines[-1].startswith("OK")
    keys = [line.split()[0] for line in lines if line.startswith("  ")]
    assert keys == ["model", "graph", "FLOPs", "weights", "arena", "build", "error", "bundles",
                    "report"]
    assert "{" not in proc.stdout and "kernels at -O3" in proc.stdout
    assert (tmp_path / "ppocr_cls.arm64" / "report.json").is_file() or \
        (tmp_path / "squeezenet.arm64" / "report.json").is_file()
