"""Pass registry and specs, the PassManager (records, printing, verification, numeric checks,
bisect), the dce / eliminate-identity passes and the edgecc-opt command line."""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass

import numpy as np
import pytest

from edgecc import pass_manager as pm
from edgecc.errors import NumericError, UsageError
from edgecc.kernels import run_graph
from edgecc.opt_cli import main as opt_main
from edgecc.pass_manager import (PASSES, PassManager, PassVerificationError, available_passes,
                                 bisect, output_error, parse_pass, parse_pipeline, pipeline,
                                 register_pass, spec_of, split_specs)
from edgecc.textir import load_module, parse_graph, print_graph


# ---- test-only passes (registered for one test, then removed) -----------------------------

@dataclass(frozen=True)
class ScaleWeights:
    """Multiplies every float weight by `factor`: wrong unless factor == 1."""
    name = "test-scale-weights"
    tolerance = 1e-5
    factor: float = 1.0
    only_first: bool = False

    def run(self, graph, ctx) -> bool:
        for p in graph.params[:1] if self.only_first else graph.params:
            p.data = (p.data * self.factor).astype(p.data.dtype)
        return self.factor != 1.0


@dataclass(frozen=True)
class Dangle:
    """Deletes the first op: leaves its readers reading an undefined value."""
    name = "test-dangle"
    tolerance = 0.0

    def run(self, graph, ctx) -> bool:
        del graph.ops[0]
        return True


@pytest.fixture
def test_passes():
    available_passes()
    for cls in (ScaleWeights, Dangle):
        register_pass(cls)
    yield
    for cls in (ScaleWeights, Dangle):
        PASSES.pop(cls.name, None)


GRAPH = """graph @net(%x: f32[1,4,3,3]) -> (%y: f32[1,4,3,3], %z: f32[1,4,3,3]) {
  params {
    %w: f32[4,4,1,1]
    %b: f32[4]
    %unused: f32[2]
  }
  %i = Identity(%x) : f32[1,4,3,3]
  %c = Conv(%i, %w, %b) : f32[1,4,3,3] loc("conv")
  %y = Relu(%c) : f32[1,4,3,3]
  %dead = Sigmoid(%c) : f32[1,4,3,3]
  %z = Dropout(%c) : f32[1,4,3,3]
  return %y, %z
}
"""


def net():
    return parse_graph(GRAPH, "net.eir")


# ---- registry and specs ---------------------------------------------------------------------

def test_every_pass_lives_in_its_own_file():
    for name, cls in available_passes().items():
        assert cls.__module__ == "edgecc.passes." + name.replace("-", "_"), name
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        assert isinstance(pm.tolerance_of(cls()), float) and callable(cls.run), name


def test_pipelines_parse():
    assert pm.PIPELINES[0] == []
    for level in pm.PIPELINES:
        names = [p.name for p in pipeline(level)]
        if level >= 1:
            assert {"eliminate-identity", "dce"} <= set(names)
    with pytest.raises(UsageError, match="-O7 is not a level"):
        pipeline(7)
    text = pm.describe_pipelines()
    assert f"-O1: {', '.join(pm.PIPELINES[1])}" in text and "dce  [tol 0]  dead code" in text


def test_pass_specs(test_passes):
    assert split_specs("a, b{x=1,y=2} ,c") == ["a", "b{x=1,y=2}", "c"]
    p = parse_pass("test-scale-weights{factor=2.5,only_first=true}")
    assert p == ScaleWeights(2.5, True)
    assert spec_of(p) == "test-scale-weights{factor=2.5,only_first=True}"
    assert parse_pass(spec_of(p)) == p
    assert [spec_of(q) for q in parse_pipeline("dce,test-scale-weights")] == \
        ["dce", "test-scale-weights"]


@pytest.mark.parametrize("spec,message", [
    ("dcee", "unknown pass 'dcee'; did you mean 'dce'?"),
    ("test-scale-weights{fctor=2}", "unknown option 'fctor' (options: factor, only_first)"),
    ("test-scale-weights{factor=big}", "option factor='big' is not a valid float"),
    ("test-scale-weights{only_first=maybe}", "option only_first='maybe' is not a valid bool"),
    ("test-scale-weights{factor=2", "must look like test-scale-weights{option=value,...}"),
])
def test_bad_pass_specs(test_passes, spec, message):
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("(", r"\(")
                       .replace(")", r"\)").replace("?", r"\?")):
        parse_pass(spec)


def test_register_rejects_nameless_and_duplicate_passes():
    with pytest.raises(TypeError, match="needs a `name"):
        register_pass(type("NoName", (), {"run": lambda self, g, c: False}))
    other = type("Other", (), {"name": "dce", "run": lambda self, g, c: False})
    with pytest.raises(TypeError, match="registered twice"):
        register_pass(other)


# ---- the pass manager -----------------------------------------------------------------------

def test_records_and_print_after():
    out = io.StringIO()
    m = PassManager(parse_pipeline("dce,eliminate-identity,dce"), print_after={"dce"},
                    stream=out)
    g = m.run(net())
    assert [(r["name"], r["changed"]) for r in m.records] == \
        [("dce", True), ("eliminate-identity", True), ("dce", False)]
    assert all(r["seconds"] >= 0 for r in m.records)
    dumps = out.getvalue()
    assert dumps.count("// -----// IR after dce") == 2
    assert "IR after dce (unchanged)" in dumps and "IR after eliminate-identity" not in dumps
    assert print_graph(g) in dumps


def test_print_after_unknown_pass_is_a_usage_error():
    with pytest.raises(UsageError, match="print_after: unknown pass nope"):
        PassManager([], print_after={"nope"})


def test_check_numerics_accepts_exact_passes():
    m = PassManager(parse_pipeline("eliminate-identity,dce"), check_numerics=True)
    m.run(net())
    assert [r["changed"] for r in m.records] == [True, True]


def test_check_numerics_names_the_pass_and_output(test_passes):
    m = PassManager(parse_pipeline("eliminate-identity,test-scale-weights{factor=1.01},dce"),
                    check_numerics=True)
    with pytest.raises(NumericError) as info:
        m.run(net())
    msg = info.value.message
    assert msg.startswith("pass 'test-scale-weights{factor=1.01}' changed output %")
    assert "the pass promises at most 1e-05" in msg
    # the scaled weight first shows in the conv result (named %z since Dropout went)
    assert "the first value to differ from its namesake before the pass is %z " \
           "(node 'conv' (Conv)" in msg
    assert info.value.exit_code == 3
    # within tolerance: a factor of 1 + 1e-7 is allowed by tolerance 1e-5
    PassManager(parse_pipeline("test-scale-weights{factor=1.0000001}"),
                check_numerics=True).run(net())


def test_invalid_ir_after_a_pass_is_reported(test_passes):
    with pytest.raises(PassVerificationError, match="pass 'test-dangle' produced invalid IR: "
                                                    ".*operand %i is not defined"):
        PassManager(parse_pipeline("test-dangle")).run(net())


def test_bisect_finds_the_first_bad_pass(test_passes):
    passes = parse_pipeline("eliminate-identity,dce,test-scale-weights{factor=1.5,"
                            "only_first=true},dce,test-scale-weights")
    g = net()
    before = print_graph(g)
    bad = bisect(g, passes)
    assert bad is not None and bad.index == 2 and bad.spec.startswith("test-scale-weights")
    assert bad.output in ("y", "z") and bad.error > 0.01
    assert "first bad pass: 'test-scale-weights{factor=1.5,only_first=True}' (#3)" in str(bad)
    assert print_graph(g) == before                      # bisect leaves the graph alone
    assert bisect(g, parse_pipeline("eliminate-identity,dce")) is None


def test_output_error():
    a = np.array([1.0, -2.0, np.nan, np.inf], np.float32)
    assert output_error(a, a.copy()) == (0.0, 2.0)
    b = a.copy()
    b[0] = 1.002
    err, scale = output_error(b, a)
    assert scale == 2.0 and err == pytest.approx(0.001, rel=1e-3)
    b = a.copy()
    b[2] = 0.0                                           # NaN disappeared
    assert output_error(b, a)[0] == math.inf
    b = a.copy()
    b[3] = -np.inf
    assert output_error(b, a)[0] == math.inf
    assert output_error(a[:2], a)[0] == math.inf


# ---- the two passes -------------------------------------------------------------------------

def _outputs(g):
    from edgecc.numerics import seeded_inputs
    return run_graph(g, seeded_inputs(g, 0))


def test_dce_removes_dead_ops_and_params():
    g = net()
    want = _outputs(g)
    assert parse_pass("dce").run(g, pm.PassContext())
    assert [o.kind for o in g.ops] == ["Identity", "Conv", "Relu", "Dropout"]
    assert [p.name for p in g.params] == ["w", "b"]
    for a, b in zip(_outputs(g), want):
        assert np.array_equal(a, b)
    assert not parse_pass("dce").run(g, pm.PassContext())


def test_eliminate_identity_keeps_output_names():
    g = net()
    want = _outputs(g)
    assert parse_pass("eliminate-identity").run(g, pm.PassContext())
    assert [o.kind for o in g.ops] == ["Conv", "Relu", "Sigmoid"]
    assert [v.name for v in g.outputs] == ["y", "z"]
    assert g.ops[0].inputs[0] is g.inputs[0] and g.outputs[1] is g.ops[0].outputs[0]
    for a, b in zip(_outputs(g), want):
        assert np.array_equal(a, b)


def test_eliminate_identity_keeps_an_identity_that_names_an_output():
    g = parse_graph("""graph @g(%x: f32[2]) -> (%x: f32[2], %a: f32[2], %b: f32[2]) {
  %a = Identity(%x) : f32[2]
  %r = Relu(%x) : f32[2]
  %b = Identity(%r) : f32[2]
  return %x, %a, %b
}
""")
    parse_pass("eliminate-identity").run(g, pm.PassContext())
    assert [(o.kind, o.outputs[0].name) for o in g.ops] == [("Identity", "a"), ("Relu", "b")]


# ---- edgecc-opt -----------------------------------------------------------------------------

@pytest.fixture
def eir(tmp_path):
    path = tmp_path / "net.eir"
    path.write_text(GRAPH)
    return path


def test_opt_prints_unchanged_without_passes(eir, capsys):
    assert opt_main([str(eir)]) == 0
    out = capsys.readouterr().out
    assert out == print_graph(net())
    eir.write_text(out)
    assert opt_main([str(eir)]) == 0
    assert capsys.readouterr().out == out


def test_opt_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(GRAPH))
    assert opt_main(["-", "-p", "dce"]) == 0
    assert "Sigmoid" not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(GRAPH.replace("Relu(%c)", "Relu(%q)")))
    assert opt_main(["-"]) == 2
    assert capsys.readouterr().err.startswith("edgecc-opt: error: <stdin>:9:13: undefined")


def test_opt_runs_passes_and_writes_module(eir, tmp_path, capsys):
    dest = tmp_path / "out" / "o.eir"
    dest.parent.mkdir()
    assert opt_main([str(eir), "-O1", "--check-numerics", "-o", str(dest)]) == 0
    assert capsys.readouterr().out == ""
    text = dest.read_text()
    assert "Identity" not in text and "Sigmoid" not in text and "%unused" not in text
    assert (tmp_path / "out" / "o.weights.npz").is_file()


def test_opt_reads_weights_beside_the_file(eir):
    g = net()
    w = {p.name: np.full(p.type.shape, 0.5, p.type.np_dtype) for p in g.params}
    np.savez(eir.with_name("net.weights.npz"), **w)
    from edgecc.opt_cli import _parser, _read
    text, filename, weights = _read(_parser().parse_args([str(eir)]))
    assert filename == str(eir) and np.all(weights["w"] == 0.5)
    assert opt_main([str(eir), "-o", str(eir.with_name("copy.eir"))]) == 0
    g = load_module(eir.with_name("copy.eir"))
    assert np.all(g.param("w").data == 0.5)


@pytest.mark.parametrize("argv,code,message", [
    (["missing.eir"], 1, "edgecc-opt: error: missing.eir: no such file"),
    ([], 1, "edgecc-opt: error: no input file"),
    (["--bogus"], 1, "edgecc-opt: error: unrecognized arguments: --bogus"),
])
def test_opt_usage_errors(argv, code, message, capsys):
    assert opt_main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_opt_parse_error_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.eir"
    bad.write_text(GRAPH.replace("Relu(%c)", "Relu(%nope)"))
    assert opt_main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgecc-opt: error: {bad}:9:13: undefined value %nope")


def test_opt_bisect_and_numerics_exit_3(eir, test_passes, capsys):
    assert opt_main([str(eir), "-p", "dce,test-scale-weights{factor=2}", "--bisect"]) == 3
    err = capsys.readouterr().err
    assert "edgecc-opt: error: first bad pass: 'test-scale-weights{factor=2.0}' (#2)" in err
    assert opt_main([str(eir), "-p", "test-scale-weights{factor=2}", "--check-numerics"]) == 3
    assert "pass 'test-scale-weights{factor=2.0}' changed output" in capsys.readouterr().err
    assert opt_main([str(eir), "-p", "eliminate-identity,dce", "--bisect"]) == 0
    assert "bisect: all 2 pass(es) match" in capsys.readouterr().err


def test_split_chunks_keep_line_numbers():
    from edgecc.opt_cli import expected_errors, split_chunks
    text = "a\n// -----\nb\n// expected-error @+1 {{boom}}\nc\n//   -----  \n"
    chunks = split_chunks(text)
    assert len(chunks) == 2 and chunks[1].splitlines()[2] == "b"
    assert expected_errors(chunks[1]) == [(5, "boom")]


def test_opt_list_passes(capsys):
    assert opt_main(["--list-passes"]) == 0
    out = capsys.readouterr().out
    assert "-O1: " in out and "  eliminate-identity  [tol 0]" in out
