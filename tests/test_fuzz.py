"""The differential fuzzer (tests/fuzz/: generate.py, oracle.py, shrink.py; long runs with
bench/fuzz.py): random valid ONNX graphs compiled at -O0..-O3 and checked against
onnxruntime, with the float64 ONNX reference evaluator as the arbiter.

- a seeded smoke run in the default suite (well under a minute);
- every bug found is kept in tests/fuzz_corpus/ (<name>.onnx, its doc_string says what broke,
  and <name>.npz its inputs) and rebuilt at every level;
- `pytest -m fuzz` runs a longer sweep.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.fuzz.generate import random_model
from tests.fuzz.oracle import check, judge
from tests.fuzz.shrink import shrink
from tests.targets import FAST

CORPUS = Path(__file__).parent / "fuzz_corpus"
QEMU = shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")


def _failures(verdicts):
    return [v for v in verdicts if v.status in ("wrong", "crash", "invalid")]


def test_smoke_run():
    """24 seeded graphs, each at one -O level (seed % 4), for this machine's widest x86."""
    bad = []
    for seed in range(24):
        model, feeds = random_model(seed)
        bad += [(seed, v) for v in _failures(check(model, feeds, (seed % 4,),
                                                   mcpu=FAST.mcpu))]
    assert not bad, bad


@pytest.mark.qemu
@pytest.mark.skipif(not QEMU, reason="needs qemu-aarch64 and aarch64-linux-gnu-gcc")
def test_smoke_run_arm64():
    bad = []
    for seed in (100, 101):
        model, feeds = random_model(seed)
        bad += [(seed, v) for v in _failures(check(model, feeds, (3,), ("arm64",)))]
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(p.stem for p in CORPUS.glob("*.onnx")))
def test_corpus(name):
    model = onnx.load(CORPUS / f"{name}.onnx")
    feeds = dict(np.load(CORPUS / f"{name}.npz"))
    verdicts = check(model, feeds, (0, 1, 2, 3), mcpu=FAST.mcpu)
    assert [v.status for v in verdicts] == ["match"] * 4, (model.doc_string, verdicts)


def test_generator_is_deterministic_and_valid():
    a, fa = random_model(7)
    b, fb = random_model(7)
    assert a.SerializeToString() == b.SerializeToString()
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    onnx.checker.check_model(a, full_check=True)
    kinds = {n.op_type for s in range(40) for n in random_model(s)[0].graph.node}
    assert {"Conv", "MaxPool", "Resize", "Gemm", "Concat", "Slice", "Softmax"} <= kinds


def test_judge_names_the_side_that_departs():
    exact = [np.array([1.0, 2.0, 3.0])]
    assert judge([exact[0] + 1e-5], exact, lambda: exact)[0] == "match"
    far = [exact[0] + 0.5]
    assert judge(far, exact, lambda: exact)[0] == "wrong"
    # onnxruntime far from the exact result, the bundle on it: a match, and said so
    status, detail = judge(exact, far, lambda: exact)
    assert status == "match" and "onnxruntime departs" in detail


def test_shrinker_keeps_only_the_guilty_nodes():
    """A failure made to depend on one Softmax deep in a graph is reduced to the nodes up to
    it, minus those that only pass values through."""
    model, feeds = random_model(3, min_nodes=12, max_nodes=12)
    guilty = next(n.output[0] for n in model.graph.node if n.op_type in ("Conv", "Relu"))

    def fails(m, f):
        return any(guilty in n.output for n in m.graph.node)
    small = shrink(model, feeds, fails)
    assert fails(small, feeds)
    assert len(small.graph.node) < len(model.graph.node)
    onnx.checker.check_model(small)


@pytest.mark.fuzz
def test_long_sweep():
    """300 graphs at every level (about 10 minutes on 2 cores): `pytest -m fuzz`."""
    bad = []
    for seed in range(1000, 1300):
        model, feeds = random_model(seed)
        bad += [(seed, v) for v in _failures(check(model, feeds, mcpu=FAST.mcpu))]
    assert not bad, bad
