"""Whole models through the user's path (edgecc.compile at -O3 → bundle → run), compared with
the reference executor and onnxruntime. The arena is NaN-poisoned before every run, so a wrong
memory plan shows up as a wrong output.

Default run: arm64 bundles of SqueezeNet, PP-OCR cls and ShuffleNet under qemu-aarch64, and
x86_64 bundles of four models; `-m slow` adds x86_64 bundles of every zoo model.
"""
import json
import shutil
from pathlib import Path

import pytest

import edgecc
from edgecc import zoo
from edgecc.backends.bundle.runner import load
from edgecc.check import onnxruntime_outputs
from edgecc.numerics import relative_error
from edgecc.kernels import run_graph
from edgecc.onnx_import import import_onnx
from tests.shared_models import real_data
from tests.targets import RUNNABLE, target_id

TOLERANCE = 1e-3          # of the output's scale (issue: bundles vs reference and onnxruntime)
HAVE_QEMU = all(shutil.which(t) for t in ("qemu-aarch64", "aarch64-linux-gnu-gcc"))
SLOW_MODELS = ["resnet50", "inception_v1", "inception_v2", "densenet121", "vgg19",
               "bvlc_alexnet", "zfnet512"]


def feeds_for(name):
    if name.startswith("ppocr"):
        (input_name, shape), = zoo.default_input_shapes(name).items()
        return {input_name: zoo.text_image(shape[2], shape[3])}
    return zoo.sample_inputs(name, seed=0)


def check_model(name, target, zoo_path, tmp_path):
    path = zoo_path(name)
    shapes = zoo.default_input_shapes(name)
    art = edgecc.compile(path, target=target, opt_level=3, outdir=str(tmp_path / target),
                         input_shapes=shapes)
    feeds = feeds_for(name)
    got = load(art.path, poison_arena=True).run(feeds)
    reference = run_graph(import_onnx(str(path), shapes), feeds)
    ort = onnxruntime_outputs(str(path), feeds)
    for g, r, o in zip(got, reference, ort):
        assert relative_error(g, r) <= TOLERANCE, f"{name}/{target} vs reference"
        assert relative_error(g, o.reshape(g.shape)) <= TOLERANCE, f"{name}/{target} vs ORT"


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-aarch64 and aarch64-linux-gnu-gcc "
                    "(bash .ci/setup installs them)")
@pytest.mark.parametrize("name", ["squeezenet", "ppocr_cls", "shufflenet"])
def test_arm64_bundle_under_qemu(name, zoo_path, tmp_path):
    check_model(name, "arm64", zoo_path, tmp_path)


@pytest.mark.parametrize("name", ["squeezenet", "ppocr_cls", "shufflenet", "ppocr_det"])
def test_x86_64_bundle(name, zoo_path, tmp_path):
    check_model(name, "x86_64", zoo_path, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MODELS)
def test_x86_64_bundle_zoo(name, zoo_path, tmp_path):
    check_model(name, "x86_64", zoo_path, tmp_path)


def test_profile_library_times_every_step_of_the_same_code(zoo_path, tmp_path):
    """`make profile` (runner.load(..., profile=True)): the same kernels plus a timer per
    step. SqueezeNet: identical outputs, one entry per kernel launch or copy, in run order,
    the steps' sum within the measured wall time; reset clears them."""
    import time

    import numpy as np
    art = edgecc.compile(zoo_path("squeezenet"), target="x86_64", opt_level=3,
                         outdir=str(tmp_path / "b"))
    prof = load(art.path, profile=True)
    feeds = feeds_for("squeezenet")
    np.testing.assert_array_equal(prof.run(feeds)[0], load(art.path).run(feeds)[0])
    steps = step_names(art.path)
    prof.reset_step_times()
    assert all(t == 0.0 for _, t in prof.step_times())
    start = time.perf_counter()
    for _ in range(5):
        prof.run(feeds)
    wall = time.perf_counter() - start
    times = prof.step_times()
    assert [w for w, _ in times] == steps
    assert all(t > 0 for _, t in times)
    assert 0.3 * wall < sum(t for _, t in times) <= wall
    with pytest.raises(edgecc.errors.UsageError, match="profile=True"):
        load(art.path).step_times()


def step_names(path):
    """The step descriptions model.c runs, in order (from its step table)."""
    import re
    text = (path / "model.c").read_text()
    table = text[text.index("static const step_t S[] = {"):text.index("#define NUM_STEPS")]
    return re.findall(r'"((?:kernel|copy)[^"]*)"\},', table)


@pytest.mark.parametrize("target", RUNNABLE, ids=target_id)
def test_trained_crnn_bundle(target, tmp_path):
    """The CRNN of ../shared/models (ResNet-style backbone, two LSTMs unrolled as Gemm + gates,
    as PyTorch exports them) on a real captcha: each direction's 20 input projections run as
    one batched product (batch-gemms; the dense rule's few-rows form), and the bundle matches
    the reference executor and onnxruntime and decodes the same text."""
    data = real_data()
    path = str(data.model_path("captcha_crnn"))
    x = data.evaluation("captcha_crnn")[0][None]
    shapes = {"image": list(x.shape)}
    art = edgecc.compile(path, opt_level=3, outdir=str(tmp_path / "b"), input_shapes=shapes,
                         mcpu=target.mcpu)
    report = json.loads((Path(art.path) / "report.json").read_text())
    batched = [r for r in report["passes"] if r["name"] == "batch-gemms"]
    assert batched and batched[0]["changed"]
    got = load(art.path, poison_arena=True).run({"image": x})[0]
    reference = run_graph(import_onnx(path, shapes), {"image": x})[0]
    ort = onnxruntime_outputs(path, {"image": x})[0]
    assert relative_error(got, reference) <= TOLERANCE
    assert relative_error(got, ort.reshape(got.shape)) <= TOLERANCE
    assert data.answer("captcha_crnn", [got]) == data.answer("captcha_crnn", [ort])
