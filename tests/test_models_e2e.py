"""Whole models through the user's path (edgecc.compile at -O3 → bundle → run), compared with
the reference executor and onnxruntime. The arena is NaN-poisoned before every run, so a wrong
memory plan shows up as a wrong output.

Default run: arm64 bundles of SqueezeNet, PP-OCR cls and ShuffleNet under qemu-aarch64, and
x86_64 bundles of four models; `-m slow` adds x86_64 bundles of every zoo model.
"""
import shutil

import pytest

import edgecc
from edgecc import zoo
from edgecc.backends.runner import load
from edgecc.check import onnxruntime_outputs
from edgecc.driver import relative_error
from edgecc.kernels import run_graph
from edgecc.onnx_import import import_onnx

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
        assert relative_error(g, r)[1] <= TOLERANCE, f"{name}/{target} vs reference"
        assert relative_error(g, o.reshape(g.shape))[1] <= TOLERANCE, f"{name}/{target} vs ORT"


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
