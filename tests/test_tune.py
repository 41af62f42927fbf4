"""--tune / --tuning-cache: records are written, reused without tuning, applied
deterministically, and the tuned bundle still computes the model (vs the reference executor).
The search: knobs of the default rules (schedule_knobs) first, MetaSchedule for kernels under
the generic schedule.

One small conv kernel (16->16 channels, 3x3, 16x16) tuned once with 8 trials per session;
the knob tests tune a 1x1 conv (NCHW at -O3, too few MACs to convert its layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgecc
from edgecc.backends import tune
from edgecc.backends.tune import records as tune_records
from edgecc.backends.tune import search as tune_search
from edgecc.backends.tvm.build import KernelSet
from edgecc.backends.tvm.lower import kernel_prim_func
from edgecc.target import make_target
from edgecc.cli import main
from edgecc.driver import Options, optimize, run_compile
from edgecc.errors import UsageError
from edgecc.kernels import run_graph
from edgecc.onnx_import import import_onnx
from tests.targets import AVX512, FAST, X86, target_id

pytest.importorskip("psutil")       # MetaSchedule counts cores with it

TRIALS = 8
# tuning measures kernels on this machine: the fastest x86 variant that runs here
MCPU = {"mcpu": FAST.mcpu}


def _conv_model(path: Path, channels=16, size=16) -> Path:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1
    b = rng.standard_normal(channels).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
         helper.make_tensor("b", TensorProto.FLOAT, b.shape, b)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """(model path, cache dir, the tuned bundle, tuning progress text)."""
    import io
    root = tmp_path_factory.mktemp("tune")
    model = _conv_model(root / "conv.onnx")
    cache = root / "cache"
    log = io.StringIO()
    art = run_compile(str(model), Options(
        outdir=str(root / "tuned"), tune=TRIALS, tuning_cache=str(cache), **MCPU), log=log)
    return model, cache, art, log.getvalue()


def _feeds():
    return {"x": np.random.default_rng(1).standard_normal((1, 16, 16, 16)).astype(np.float32)}


def test_tuning_writes_records(tuned):
    model, cache, art, log = tuned
    key = tune.target_key(FAST)
    records = (cache / key / "database_tuning_record.json").read_text().splitlines()
    # the default schedule and the best tuned candidate are both measured records
    assert 1 <= len(records) <= 2
    assert "8 trials" in log and "GFLOP/s" in log and "100.0% FLOPs" in log, log


def test_tuned_bundle_matches_reference(tuned):
    model, cache, art, _ = tuned
    graph = import_onnx(str(model))
    want = run_graph(graph, _feeds())[0]
    got = art.run(_feeds())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_records_reused_without_tuning_and_builds_identical(tuned, tmp_path, monkeypatch):
    model, cache, _, _ = tuned

    def no_search(*args, **kwargs):
        raise AssertionError("a build with records must not tune")
    monkeypatch.setattr(tune_search, "search", no_search)
    objs = []
    for i in range(2):
        out = tmp_path / f"b{i}"
        edgecc.compile(str(model), outdir=str(out), tuning_cache=str(cache), **MCPU)
        objs.append((out / "kernels.o").read_bytes())
    assert objs[0] == objs[1]
    # --tune N with every chosen kernel already recorded: still no search
    edgecc.compile(str(model), outdir=str(tmp_path / "b2"), tune=TRIALS,
                   tuning_cache=str(cache), **MCPU)
    assert (tmp_path / "b2" / "kernels.o").read_bytes() == objs[0]


def test_build_applies_the_best_record(tuned):
    model, cache, _, _ = tuned
    graph = optimize(import_onnx(str(model)), Options(), target=FAST)[0]
    records = tune.tuning_for(graph, FAST, 0, str(cache))
    KernelSet(graph, FAST, records)
    assert len(records.used) == 1           # the conv kernel came from a record
    conv = next(op for op in graph.ops if op.kind in ("Conv", "Fused"))
    ranked = records.ranked(kernel_prim_func(conv, FAST))
    means = [tune_records.mean_secs(r) for r in ranked]
    assert means == sorted(means)


def test_records_never_apply_to_another_target(tuned):
    model, cache, _, _ = tuned
    graph = import_onnx(str(model))
    other = make_target("x86_64", mcpu="x86-64-v2")
    assert tune.target_key(other) != tune.target_key(FAST)
    records = tune.TuningRecords(cache, other)
    KernelSet(graph, other, records)
    assert records.used == []


def test_arm64_tuning_explains_the_rpc_workflow(tmp_path):
    model = _conv_model(tmp_path / "conv.onnx")
    with pytest.raises(UsageError, match="RPC.*tuning_cache"):
        edgecc.compile(str(model), target="arm64", outdir=str(tmp_path / "o"), tune=TRIALS,
                       tuning_cache=str(tmp_path / "cache"))
    assert main([str(model), "--target", "arm64", "--tune", "4", "-o",
                 str(tmp_path / "o2")]) == 1


def test_bad_cache_dir_is_a_usage_error(tmp_path):
    model = _conv_model(tmp_path / "conv.onnx")
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(UsageError, match="is a file"):
        edgecc.compile(str(model), outdir=str(tmp_path / "o"), tuning_cache=str(afile))
    with pytest.raises(UsageError, match="does not exist"):
        edgecc.compile(str(model), outdir=str(tmp_path / "o"),
                       tuning_cache=str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="non-negative"):
        edgecc.compile(str(model), outdir=str(tmp_path / "o"), tune=-1)
    assert main([str(model), "--tuning-cache", str(afile), "-o", str(tmp_path / "o3")]) == 1


def test_choose_kernels_covers_the_flops(tmp_path):
    from edgecc.ir import Graph, TensorType, Value
    from edgecc.ops import build_op
    g = Graph("g")
    x = Value("x", TensorType("f32", (1, 8, 32, 32)))
    g.inputs.append(x)
    big = build_op("Conv", [x, g.add_param("w1", np.zeros((32, 8, 3, 3), np.float32))],
                   {"pads": [1, 1, 1, 1]}, name="big")
    small = build_op("Conv", [big.outputs[0], g.add_param("w2", np.zeros((2, 32, 1, 1),
                                                                         np.float32))],
                     {}, name="small")
    relu = build_op("Relu", [small.outputs[0]], {}, name="relu")
    g.ops += [big, small, relu]
    g.outputs.append(relu.outputs[0])
    chosen = tune.choose_kernels(g, FAST, 100)
    assert [c.op.name for c in chosen] == ["big"]      # 97% of the FLOPs: enough alone
    assert chosen[0].trials == 100 and chosen[0].share > 0.9
    both = tune.choose_kernels(g, FAST, 1000, coverage=0.99)
    assert [c.op.name for c in both] == ["big", "small"]
    assert sum(c.trials for c in both) == 1000 and all(c.trials >= 8 for c in both)
    # a kernel whose share of the budget is below MIN_TRIALS is left to the default
    assert [c.op.name for c in tune.choose_kernels(g, FAST, 100, coverage=0.99)] == ["big"]


def test_device_tuning_tasks_for_arm64(tmp_path):
    """The RPC workflow's first step: tuning tasks of the arm64 kernels and the cache
    directory an arm64 build reads (the search itself needs a device)."""
    model = _conv_model(tmp_path / "conv.onnx")
    graph = optimize(import_onnx(str(model)), Options(target="arm64"))[0]
    target = make_target("arm64")
    tasks, db_dir = tune.device_tuning_tasks(graph, target, tmp_path / "records", num_cores=4)
    assert len(tasks) == 1 and "aarch64" in str(tasks[0].target)
    assert Path(db_dir) == tmp_path / "records" / tune.target_key(target)
    # an arm64 build reads that directory (empty: the default schedules, no error)
    records = tune.tuning_for(graph, target, 0, str(tmp_path / "records"))
    assert records is not None and len(records) == 0
    assert tune.tuning_for(graph, make_target("x86_64"), 0, str(tmp_path / "records")) is None


def test_failed_search_keeps_the_default_schedule(tmp_path, monkeypatch):
    """MetaSchedule runs for kernels under the generic schedule (the Conv rule removed)."""
    import io

    from edgecc.backends.tvm import primitives

    def boom(*args, **kwargs):
        raise RuntimeError("no design space for this block")
    monkeypatch.setattr(tune_search, "search", boom)
    monkeypatch.delitem(primitives.SCHEDULE_RULES, "Conv")
    model = _conv_model(tmp_path / "conv.onnx")
    graph = optimize(import_onnx(str(model)), Options(), target=FAST)[0]
    log = io.StringIO()
    records = tune.tune_kernels(graph, FAST, TRIALS, tmp_path / "cache", progress=log)
    assert "search failed: RuntimeError: no design space" in log.getvalue()
    assert len(records) == 1                    # the default schedule's record
    _same_kernels(KernelSet(graph, FAST, records), KernelSet(graph, FAST))


def _same_kernels(a: KernelSet, b: KernelSet) -> None:
    import tvm
    for ka, kb in zip(a.functions(), b.functions()):
        assert ka.func == kb.func
        tvm.ir.assert_structural_equal(ka.prim, kb.prim)


def test_tuned_schedule_lands_in_the_bundle(tmp_path, monkeypatch):
    """MatMul under the generic schedule (its own rule removed here, as for any kernel class
    without a rule) loses to MetaSchedule by 5-15x even with 8 trials, so the tuned record is
    chosen; the bundle differs from the untuned one and still matches the reference executor.
    (The one kernel is at the arena's peak: the memory plan would build it scratch-free, with
    no record, whenever MetaSchedule's schedule has scratch; here it keeps its scratch.)"""
    from edgecc.backends.bundle import program
    from edgecc.backends.tvm import primitives
    monkeypatch.delitem(primitives.SCHEDULE_RULES, "MatMul")
    monkeypatch.setattr(program, "fast_without_scratch", lambda op: False)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((512, 512)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [128, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [128, 512])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())])
    model = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model)
    cache = tmp_path / "cache"
    tuned = edgecc.compile(str(model), outdir=str(tmp_path / "t"), tune=TRIALS,
                           tuning_cache=str(cache), **MCPU)
    plain = edgecc.compile(str(model), outdir=str(tmp_path / "p"), **MCPU)
    key = tune.target_key(FAST)
    assert len((cache / key / "database_tuning_record.json").read_text().splitlines()) == 2
    objects = [(tmp_path / d / "kernels.o").read_bytes() for d in ("t", "p")]
    assert objects[0] != objects[1]
    x = {"x": rng.standard_normal((128, 512)).astype(np.float32)}
    want = run_graph(import_onnx(str(model)), x)[0]
    for art in (tuned, plain):
        np.testing.assert_allclose(art.run(x)[0], want, rtol=1e-4, atol=1e-4 * float(want.max()))


# ---- the knob search -----------------------------------------------------------------------

def _pointwise_model(path: Path, channels=16, size=16) -> Path:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((channels, channels, 1, 1)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                              [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def _records(cache: Path) -> list[str]:
    key = tune.target_key(FAST)
    return (cache / key / "database_tuning_record.json").read_text().splitlines()


def test_knob_record_lands_in_the_bundle(tmp_path, monkeypatch):
    """With a poor default tile (conv_tile forced to 1 x 1: scalar code), the knob search
    finds a vectorized tile many times faster; its record is what the bundle builds, a
    rebuild from the records is byte-identical, and the result matches the reference."""
    import io

    from edgecc.backends.tvm import schedule_conv
    monkeypatch.setattr(schedule_conv, "conv_tile", lambda *args, **kwargs: (1, 1))
    model = _pointwise_model(tmp_path / "pw.onnx")
    cache, log = tmp_path / "cache", io.StringIO()
    tuned = run_compile(str(model), Options(outdir=str(tmp_path / "t"), tune=TRIALS,
                                            tuning_cache=str(cache), **MCPU), log=log)
    assert "conv.tile (1, 1) -> (" in log.getvalue() and "(tuned: knobs;" in log.getvalue(), \
        log.getvalue()
    assert len(_records(cache)) == 2                   # the default and the knob winner
    plain = edgecc.compile(str(model), outdir=str(tmp_path / "p"), **MCPU)
    again = edgecc.compile(str(model), outdir=str(tmp_path / "r"), tuning_cache=str(cache),
                           **MCPU)
    objects = [(tmp_path / d / "kernels.o").read_bytes() for d in ("t", "p", "r")]
    assert objects[0] != objects[1] and objects[0] == objects[2]
    x = {"x": np.random.default_rng(1).standard_normal((1, 16, 16, 16)).astype(np.float32)}
    want = run_graph(import_onnx(str(model)), x)[0]
    for art in (tuned, plain, again):
        np.testing.assert_allclose(art.run(x)[0], want, rtol=1e-4, atol=1e-4 * float(want.max()))


def test_slower_candidate_is_not_chosen(tmp_path, monkeypatch):
    """The only candidate offered (a 1 x 1 tile) is far slower than the default: only the
    default's record is written and builds with the records equal the default build."""
    import io


    from edgecc.backends.tvm import schedule_conv
    monkeypatch.setattr(schedule_conv, "conv_tiles", lambda *args, **kwargs: [(1, 1)])
    model = _pointwise_model(tmp_path / "pw.onnx")
    graph = optimize(import_onnx(str(model)), Options(), target=FAST)[0]
    log = io.StringIO()
    records = tune.tune_kernels(graph, FAST, TRIALS, tmp_path / "cache", progress=log)
    assert "the default schedule stays" in log.getvalue(), log.getvalue()
    assert "1 knob candidate" in log.getvalue(), log.getvalue()
    assert len(records) == 1
    tuned = KernelSet(graph, FAST, records)
    assert len(records.used) == 1
    _same_kernels(tuned, KernelSet(graph, FAST))


def test_knobs_leave_the_default_schedules_alone():
    """Outside tuning a knob is its default (its choices are not even listed); inside,
    overrides apply, every knob read is reported with its choices (the default among
    them), and a value that is not a choice is refused."""
    from edgecc.backends.tvm.knobs import knob, overrides

    def no_choices():
        raise AssertionError("choices listed outside tuning")
    assert knob("t", (4, 2), no_choices) == (4, 2)
    with overrides({"t": (2, 2)}) as seen:
        assert knob("t", (4, 2), lambda: [(2, 2), (1, 1)]) == (2, 2)
        assert knob("u", 3, lambda: [1, 2]) == 3
    assert seen == {"t": ((4, 2), [(4, 2), (2, 2), (1, 1)]), "u": (3, [3, 1, 2])}
    with overrides({"t": (8, 8)}), pytest.raises(ValueError, match="not a choice"):
        knob("t", (4, 2), lambda: [(2, 2)])


@pytest.mark.parametrize("target", X86, ids=target_id)
@pytest.mark.parametrize("opt_level", [2, 3])
def test_default_rule_traced_without_overrides_is_the_build_schedule(tmp_path, opt_level,
                                                                     target):
    """search.traced (the default record) schedules exactly like a build; its knobs list
    the model's picks first among valid choices (NCHW conv at -O2, blocked at -O3)."""
    import tvm

    from edgecc.backends.tvm.lower import anchor_kind
    from edgecc.backends.tvm.primitives import ScheduleContext
    from edgecc.backends.tvm.schedule import schedule
    model = _conv_model(tmp_path / "conv.onnx")
    graph = optimize(import_onnx(str(model)), Options(opt_level=opt_level), target=target)[0]
    op = next(op for op in graph.ops if anchor_kind(op) == "Conv")
    func = kernel_prim_func(op, target)
    sch, knobs = tune_search.traced(func, op, target)
    built = schedule(kernel_prim_func(op, target), "Conv", ScheduleContext(target))
    tvm.ir.assert_structural_equal(sch.mod["main"], built.with_attr("global_symbol", "main"))
    tile = "conv.tile" if opt_level == 2 else "blocked.tile"
    assert tile in knobs and len(knobs[tile][1]) > 1
    for name, (default, choices) in knobs.items():
        assert default in choices
        for value in choices[:4]:           # every choice schedules this workload
            tune_search.traced(func, op, target, {name: value})


def test_candidates_with_scratch_at_the_arena_peak_are_rejected(zoo_path):
    """On resnet50, a blocked 3x3 conv computing its whole padded input at once needs scratch
    that makes two of its ops at the arena's peak lean (built with the lean schedule, not
    their record); a few rows per task does not. Against a per-task reference the guard
    rejects the whole-input candidate; against a whole-input reference it accepts both
    (no op becomes lean that the reference did not already make lean)."""
    from edgecc.backends.tune.arena_guard import ArenaGuard
    target = AVX512                    # the plan decides; nothing runs
    graph = optimize(import_onnx(str(zoo_path("resnet50"))), Options(), target=target)[0]
    peak = ArenaGuard(graph, target)
    verdicts = []
    for c in tune.choose_kernels(graph, target, 200)[:3]:   # k3 (56x56 3x3) is among them
        func = kernel_prim_func(c.op, target)
        default, _ = tune_search.traced(func, c.op, target)
        once, _ = tune_search.traced(func, c.op, target, {"blocked.pad_per_task": 0})
        rows, _ = tune_search.traced(func, c.op, target, {"blocked.pad_per_task": 1})
        assert peak.guard(c.indices, default)(default)
        assert peak.guard(c.indices, once)(rows)
        verdicts.append(peak.guard(c.indices, rows)(once))
    assert False in verdicts and True in verdicts, verdicts
