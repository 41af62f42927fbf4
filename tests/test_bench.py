"""Smoke tests of the benchmarks' machinery (no timing assertions: this VM's speed varies)."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import tvm_onnx  # noqa: E402


def test_interleaved_runs_every_candidate_once_per_round():
    order = []
    fns = {k: (lambda k=k: order.append(k)) for k in "abcd"}
    res = common.interleaved(fns, rounds=6, batch_seconds=0.0, gap_seconds=0.0)  # 1 call/batch
    assert {k: len(v) for k, v in res.samples.items()} == {k: 6 for k in "abcd"}
    calls = order[4:]                       # after the four warm-up calls
    assert calls[::2] == calls[1::2]        # each batch: one untimed call, then the timed one
    calls = calls[::2]
    rounds = [calls[i:i + 4] for i in range(0, len(calls), 4)]
    assert len(rounds) == 6 and all(sorted(r) == list("abcd") for r in rounds)
    assert len({"".join(r) for r in rounds}) > 1, "the order must vary between rounds"


def test_ratio_is_median_of_per_round_ratios():
    # a phase change doubles both candidates' times in round 2: the paired ratio ignores it
    res = common.Interleaved({"a": [2.0, 4.0, 2.2], "b": [1.0, 2.0, 1.0]})
    assert res.ratio("a", "b") == pytest.approx(2.0)
    assert res.median == {"a": 2.2, "b": 1.0}
    assert res.spread("b") == pytest.approx(1.0)
    assert common.geomean([1.0, 4.0, None]) == pytest.approx(2.0)
    assert common.geomean([]) is None


def test_dir_bytes_counts_matching_files(tmp_path):
    (tmp_path / "libm.a").write_bytes(b"x" * 10)
    (tmp_path / "m_weights.bin").write_bytes(b"x" * 7)
    assert common.dir_bytes(tmp_path, ["lib*.a"]) == 10
    assert common.dir_bytes(tmp_path) == 17


def _add_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_tvm_build_timeout_is_recorded_not_raised(tmp_path):
    _add_model(tmp_path / "m.onnx")
    rec = tvm_onnx.build(tmp_path / "m.onnx", {"x": (2, 3)}, tmp_path / "m.so", timeout=0.01)
    assert rec["ok"] is False and "within the 0.01 s limit" in rec["error"]


def test_tvm_import_failure_reason_is_recorded(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    rec = tvm_onnx.build(tmp_path / "bad.onnx", {"x": (2, 3)}, tmp_path / "m.so", timeout=120)
    assert rec["ok"] is False and rec["error"].startswith("import")


def test_tvm_build_and_run_small_model(tmp_path):
    _add_model(tmp_path / "m.onnx")
    rec = tvm_onnx.build(tmp_path / "m.onnx", {"x": (2, 3)}, tmp_path / "m.so", timeout=300)
    assert rec["ok"], rec["error"]
    m = tvm_onnx.TvmModel(tmp_path / "m.so", ["x"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    tvm_onnx.set_num_threads(1)
    np.testing.assert_array_equal(m.run({"x": x})[0], x + x)


def test_latency_benchmark_writes_results(tmp_path, zoo_path):
    zoo_path("ppocr_cls")                  # skips when the shared model is missing
    import bench_latency
    out = tmp_path / "latency.json"
    rc = bench_latency.main(["--models", "ppocr_cls", "--threads", "1", "--repeat", "1",
                             "--budget", "1", "--no-tvm", "--no-peak",
                             "--workdir", str(tmp_path / "work"), "-o", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {"machine", "config", "models", "summary"} <= set(res)
    assert res["machine"]["onnxruntime"] and res["machine"]["cores"] == os.cpu_count()
    assert "edgecc_revision" in res["machine"]
    (row,) = res["models"]
    assert row["model"] == "ppocr_cls" and row["tvm"] is None
    build = row["edgecc"]["edgecc-O3"]
    assert build["ok"], build["error"]
    assert build["bytes"]["lib_so"] > 0 and build["bytes"]["weights"] > 0
    assert build["max_rel_err"] < 1e-3
    lat = row["latency"]["1"]
    assert lat["rounds"] == 1
    assert set(lat["ms"]) == {"onnxruntime", "edgecc-O3"}
    assert all(v > 0 for v in lat["ms"].values())
    assert set(lat["ratio_vs_onnxruntime"]) == set(lat["ratio_of_min"]) == {"edgecc-O3"}
    assert len(lat["loadavg"]) == 2 and "pct_sgemm_peak" not in lat     # --no-peak
    geo = res["summary"]["geomean edgecc-O3/onnxruntime"]["1"]
    assert geo["models"] == 1 and geo["value"] == pytest.approx(
        lat["ratio_vs_onnxruntime"]["edgecc-O3"], rel=1e-3)
