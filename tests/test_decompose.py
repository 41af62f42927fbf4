"""decompose: the factors (a decomposition at the weights' rank reproduces the layer to fp32
precision; the held-out error falls as the rank grows, on a trained model's layers), the
rewrite in the text IR, refusals with their reasons, the CLI, --decompose with --int8, and
the pass end to end on the trained CRNN: decoded text kept on rendered captchas it was not
calibrated on, a faster bundle by the cost model, a deterministic build."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgecc.builder import GraphBuilder
from edgecc.kernels import run_graph
from edgecc.numerics import compare
from edgecc.pass_manager import PassContext, PassManager, parse_pass
from edgecc.passes import decompose as D
from edgecc.passes._decompose_factors import Factorizer, PatchData, channel_moment, conv_patches
from edgecc.textir import parse_graph, save_module
from tests.shared_models import real_data
from tests.targets import ARM64, AVX2, FAST

RNG = np.random.default_rng(5)


def low_rank_conv(m, c, k, r_in, r_out, seed=0):
    """W[m, c, k, k] of Tucker ranks (r_in, r_out)."""
    rng = np.random.default_rng(seed)
    core = rng.standard_normal((r_out, r_in, k, k))
    a, b = rng.standard_normal((m, r_out)), rng.standard_normal((r_in, c))
    return np.einsum("mo,oikl,ic->mckl", a, core, b).astype(np.float32) / (c * k)


def low_rank_graph():
    """3x3 conv 32->32 of Tucker ranks (8, 8), Relu, 1x1 conv 32->48 of rank 8, a Gemm of
    rank 8 on the pooled features: every low-rank form, exactly low rank."""
    g = GraphBuilder("lowrank", seed=1)
    x = g.input("x", (2, 32, 12, 12))
    w1 = g.param("w1", low_rank_conv(32, 32, 3, 8, 8, seed=1))
    b1 = g.param("b1", RNG.standard_normal(32).astype(np.float32))
    y = g.op("Relu", [g.op("Conv", [x, w1, b1], "c1", pads=[1] * 4)])
    w2 = g.param("w2", low_rank_conv(48, 32, 1, 8, 8, seed=2).reshape(48, 32, 1, 1))
    y = g.op("Conv", [y, w2], "c2")
    p = g.op("Flatten", [g.op("GlobalAveragePool", [y])])
    wg = g.param("wg", (RNG.standard_normal((48, 8)) @ RNG.standard_normal((8, 512)))
                 .astype(np.float32))
    cg = g.param("cg", RNG.standard_normal(512).astype(np.float32))
    return g.build(g.op("Gemm", [p, wg, cg], "fc")), g.feeds


# ---- factors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,method", [((24, 16, 3, 3), "tucker2"), ((24, 16, 1, 1), "svd"),
                                          ((40, 24), "svd")])
@pytest.mark.parametrize("data_aware", [False, True])
def test_full_rank_factors_are_the_layer(shape, method, data_aware):
    """At full rank the factors compute the layer's weight exactly (data-free: orthonormal
    bases; data-aware: whitened bases and least squares) - fp32 precision or better."""
    w = RNG.standard_normal(shape)
    m, c = shape[:2]
    data = None
    if data_aware:
        if len(shape) == 4:
            x = RNG.standard_normal((4, c, 9, 9)) * RNG.uniform(0.1, 3, (1, c, 1, 1))
            attrs = {"kernel_shape": list(shape[2:]), "strides": [1, 1], "dilations": [1, 1],
                     "pads": [shape[2] // 2] * 4}
            patches = conv_patches(x, shape, attrs, 10_000, np.random.default_rng(0))
            data = PatchData(patches, channel_moment(x), 4 * 81)
        else:
            rows = RNG.standard_normal((500, c)) * RNG.uniform(0.1, 3, c)
            data = PatchData(rows[:, :, None], rows.T @ rows / 500, 500)
    ranks = (c, m) if method == "tucker2" else (min(m, c),)
    f = Factorizer(method, w, RNG.standard_normal(m), data).factors(ranks)
    rel = np.abs(f.effective().reshape(shape) - w).max() / np.abs(w).max()
    assert rel < (1e-10 if not data_aware else 1e-6), rel


def test_decomposition_at_the_weights_rank_reproduces_the_graph():
    """Data-free (no calibration): every layer of exactly low rank is factored at a rank that
    keeps 99.5% of its weights' energy - here the exact rank - and the graph computes what it
    did to fp32 precision; the factors are whole NEON vectors (4) on an arm64 target."""
    graph, feeds = low_rank_graph()
    want = run_graph(graph, feeds)
    ctx = PassContext(target=ARM64)
    out = PassManager([parse_pass("decompose")], ctx=ctx).run(graph.clone())
    kinds = [op.name for op in out.ops]
    assert {"c1/reduce", "c1/core", "c1/expand", "c2/svd_v", "c2/svd_u", "fc/svd_v",
            "fc/svd_u"} <= set(kinds), kinds
    r = ctx.results["decompose"]
    assert r["layers"] == 3 and r["method"] == "data-free" and r["flops_saved"] > 0
    detail = {d["node"]: d for d in r["layers_detail"]}
    assert detail["c1"]["ranks"] == [8, 8] and detail["c2"]["ranks"] == [8]
    for got, w in zip(run_graph(out, feeds), want):
        assert compare(got, w).rel < 1e-5


def test_textir_rewrite(tmp_path):
    """edgecc-opt -p decompose on the text IR: the 3x3 conv becomes reduce (1x1, no bias) ->
    core (3x3 with the conv's pads) -> expand (1x1 with the bias); the result keeps its name."""
    graph, _ = low_rank_graph()
    src = tmp_path / "lowrank.eir"
    save_module(graph, src)                 # the text and its weights beside it
    proc = subprocess.run([sys.executable, "-m", "edgecc.opt_cli", str(src), "-p", "decompose",
                           "--target", "arm64", "--check-numerics"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "decompose: 3 layer(s) factored" in proc.stderr
    assert "  c1: tucker2 ranks [8, 8] 5.3 -> 0.6 MFLOPs" in proc.stderr

    def line(start):
        return next(ln.strip() for ln in lines if ln.strip().startswith(start))

    assert line("%c1_reduce = Conv(%x, %c1_reduce_w)").endswith(
        "pads=[0,0,0,0], strides=[1,1]} : f32[2,8,12,12] loc(\"c1/reduce\")")
    assert line("%c1_core = Conv(%c1_reduce, %c1_core_w)").endswith(
        "pads=[1,1,1,1], strides=[1,1]} : f32[2,8,12,12] loc(\"c1/core\")")
    assert "kernel_shape=[3,3]" in line("%c1_core =")
    assert line("%c1 = Conv(%c1_core, %c1_expand_w, %c1_bias)").endswith(
        ": f32[2,32,12,12] loc(\"c1/expand\")")
    assert line("%fc_v = Gemm(%flatten4, %fc_v_w)").endswith(": f32[2,12] loc(\"fc/svd_v\")")
    assert line("%fc = Gemm(%fc_v, %fc_u_w, %fc_bias)").endswith(": f32[2,512] loc(\"fc/svd_u\")")
    parse_graph("\n".join(lines))          # the result is valid text IR


def test_refusals_have_reasons():
    """Grouped convs, small layers, non-constant weights and ranks that save nothing are left
    alone, each with its reason in the report."""
    g = GraphBuilder("refused", seed=2)
    x = g.input("x", (1, 32, 8, 8))
    y = g.op("Conv", [x, g.rand("dw", (32, 1, 3, 3))], "depthwise", group=32, pads=[1] * 4)
    y = g.op("Conv", [y, g.rand("small", (8, 32, 1, 1))], "small")
    w_in = g.input("w_in", (16, 8, 1, 1))
    y = g.op("Conv", [y, w_in], "dynamic")
    y = g.op("Conv", [y, g.rand("square", (16, 16, 1, 1))], "square")
    graph = g.build(y)
    ctx = PassContext(target=ARM64)
    PassManager([parse_pass("decompose")], ctx=ctx).run(graph)
    why = {d["node"]: d["why"] for d in ctx.results["decompose"]["layers_detail"]}
    assert "grouped/depthwise" in why["depthwise"]
    assert "layer too small" in why["small"]
    assert "not constants" in why["dynamic"]
    assert "energy" in why["square"] or "no rank" in why["square"]


# ---- on a trained model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crnn():
    data = real_data()
    return data, data.model_path("captcha_crnn"), data.calibration("captcha_crnn")[:, None], \
        data.evaluation("captcha_crnn")[:, None]


def test_error_falls_with_rank_on_trained_layers(crnn):
    """The CRNN's trained 3x3 and 1x1 convs, factors fitted on 8 calibration captchas: the
    layer-output SQNR on 4 *other* captchas grows with the rank, and data-aware factors beat
    data-free ones at the same rank."""
    from edgecc.driver import load_model
    from edgecc.pass_manager import pipeline
    data, model, calib, _ = crnn
    graph, _ = load_model(str(model), {"image": (1, 3, 60, 160)})
    graph = PassManager([p for p in pipeline(3) if p.name not in
                         ("convert-layout", "fuse-kernels", "dce")],
                        ctx=PassContext(target=AVX2)).run(graph)
    layers, _ = D.candidates(graph, PassContext(target=AVX2), 8)
    picked = [lay for lay in layers if lay.op.name == "/layer_128_2_conv2/Conv"] + \
             [lay for lay in layers if lay.op.name == "/layer_128_1_conv1/Conv"]
    assert [lay.method for lay in picked] == ["tucker2", "svd"]
    from edgecc.backends.tvm.build import CompiledGraph
    run = CompiledGraph(graph, FAST).run
    envs = [run({"image": c}, keep_all=True)[1] for c in calib[:12]]
    rng = np.random.default_rng(0)
    for lay in picked:
        fit = D._patch_data(lay, envs[:8], rng)
        held = D._patch_data(lay, envs[8:], rng)
        x = held.patches.reshape(len(held.patches), -1)
        want = x @ lay.w.reshape(lay.w.shape[0], -1).T
        sqnr = {}
        for aware in (True, False):
            fz = Factorizer(lay.method, lay.w, None, fit if aware else None)
            for j, ranks in sorted(lay.levels.items()):
                got = x @ fz.factors(ranks).effective().reshape(lay.w.shape[0], -1).T
                err = np.sum((got - want) ** 2)
                sqnr[(aware, j)] = 10 * np.log10(np.sum(want ** 2) / err)
        aware = [sqnr[(True, j)] for j in sorted(lay.levels)]
        assert all(b > a for a, b in zip(aware, aware[1:])), (lay.op.name, aware)
        assert all(sqnr[(True, j)] > sqnr[(False, j)] for j in lay.levels), sqnr


def test_decomposed_crnn_keeps_the_text(crnn, tmp_path):
    """The trained CRNN (ResNet backbone + bidirectional LSTM) with --decompose on 16
    calibration captchas, pinned to an AVX2 target: the budget holds on held-out calibration
    samples, the decoded text of 12 rendered captchas is unchanged, output SQNR >= 25 dB, the
    report lists every layer, conv/gemm FLOPs and weights shrink."""
    import edgecc
    from edgecc.calibrate import pooled_sqnr
    data, model, calib, evals = crnn
    np.savez(tmp_path / "calib.npz", image=calib[:16])
    shapes = {"image": (1, 3, 60, 160)}
    dec = edgecc.compile(str(model), outdir=str(tmp_path / "d"), input_shapes=shapes,
                         mcpu="x86-64-v3", decompose=True, calib=str(tmp_path / "calib.npz"))
    ref = edgecc.compile(str(model), outdir=str(tmp_path / "o3"), input_shapes=shapes,
                         mcpu="x86-64-v3")
    rep = json.loads((tmp_path / "d" / "report.json").read_text())
    r = rep["decompose"]
    assert r["layers"] >= 1 and r["sqnr_db"] >= 28.0 and r["method"] == "data-aware"
    assert r["flops_saved"] > 0 and r["params_saved"] > 0
    assert {"node", "method", "ranks", "flops_before", "flops_after", "sqnr_db"} <= \
        set(r["layers_detail"][0])
    assert all("why" in d for d in r["layers_detail"] if d["ranks"] is None)
    ref_rep = json.loads((tmp_path / "o3" / "report.json").read_text())
    assert rep["params_bytes_after"] < ref_rep["params_bytes_after"]
    pairs = []
    for x in evals:
        a, b = ref.run({"image": x}), dec.run({"image": x})
        assert data.answer("captcha_crnn", a) == data.answer("captcha_crnn", b)
        pairs += list(zip(a, b))
    assert pooled_sqnr(pairs) >= 25.0


def test_decompose_then_int8(tmp_path):
    """--decompose --int8: the factors are quantized like any layer (QConv reading the
    reduced channels), both report sections present, the result close to the float model."""
    import edgecc
    from edgecc.onnx_export import export_onnx
    import onnx
    graph, _ = low_rank_graph()
    model = tmp_path / "lowrank.onnx"
    onnx.save(export_onnx(graph), str(model))
    calib = np.abs(RNG.standard_normal((12, 2, 32, 12, 12))).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=calib)
    b = edgecc.compile(str(model), outdir=str(tmp_path / "b"), mcpu="x86-64-v3",
                       decompose=True, int8=True, calib=str(tmp_path / "calib.npz"),
                       int8_min_sqnr=20.0)
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["decompose"]["layers"] >= 2
    assert any("reduce" in d["node"] or "svd_v" in d["node"]
               for d in rep["int8"]["layers"] if d["int8"])
    x = calib[0]
    want = run_graph(graph, {"x": x})
    got = b.run({"x": x})
    err = sum(float(np.sum((g - w) ** 2)) for g, w in zip(got, want))
    assert 10 * np.log10(sum(float(np.sum(w ** 2)) for w in want) / err) >= 15.0


@pytest.mark.parametrize("flags,message", [
    (["--calib", "CAL"], "--calib is read by --int8 and --decompose only"),
    (["--decompose", "--decompose-budget", "1.5"], "--decompose-budget"),
    (["--decompose", "--decompose-min-sqnr", "nan"], "--decompose-min-sqnr"),
])
def test_cli_usage_errors(tmp_path, flags, message):
    import onnx
    from edgecc.onnx_export import export_onnx
    graph, _ = low_rank_graph()
    model = tmp_path / "m.onnx"
    onnx.save(export_onnx(graph), str(model))
    (tmp_path / "cal").mkdir()
    flags = [str(tmp_path / "cal") if f == "CAL" else f for f in flags]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "edgecc.cli", str(model), *flags, "-o",
                           str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_data_aware_build_is_deterministic(tmp_path):
    """Two builds with calibration (measured errors, compiled runs, least squares) write
    byte-identical IR and weights."""
    import edgecc
    import onnx
    from edgecc.onnx_export import export_onnx
    graph, _ = low_rank_graph()
    rng = np.random.default_rng(9)
    for p in graph.params:                   # not exactly low rank any more
        p.data = (p.data + 0.02 * np.abs(p.data).mean() *
                  rng.standard_normal(p.data.shape)).astype(np.float32)
    model = tmp_path / "m.onnx"
    onnx.save(export_onnx(graph), str(model))
    np.savez(tmp_path / "calib.npz",
             x=np.abs(rng.standard_normal((16, 2, 32, 12, 12))).astype(np.float32))
    outs = []
    for k in range(2):
        out = tmp_path / f"ir{k}"
        edgecc.compile(str(model), outdir=str(out), mcpu="x86-64-v3", emit="ir",
                       decompose=True, calib=str(tmp_path / "calib.npz"), name="m",
                       decompose_min_sqnr=20.0)
        outs.append(((out / "m.eir").read_bytes(), (out / "m.weights.npz").read_bytes()))
    assert outs[0] == outs[1]
    assert b"/reduce" in outs[0][0]


def test_flops_budget_stops_early():
    """decompose{budget=f}: the greedy stops once f of the conv/gemm FLOPs are removed, so it
    factors fewer layers than the accuracy budget alone would allow."""
    from edgecc.pass_manager import PassContext as Ctx
    graph, _ = low_rank_graph()
    rng = np.random.default_rng(3)
    calib = [{"x": np.abs(rng.standard_normal((2, 32, 12, 12))).astype(np.float32)}
             for _ in range(16)]
    results = {}
    for budget in (0.0, 0.05):
        ctx = Ctx(target=AVX2, calibration=calib, runner=FAST)
        PassManager([parse_pass(f"decompose{{min_sqnr=30.0,budget={budget}}}")], ctx=ctx) \
            .run(graph.clone())
        results[budget] = ctx.results["decompose"]
    full, capped = results[0.0], results[0.05]
    assert full["layers"] == 3 and capped["layers"] < full["layers"]
    assert capped["flops_saved"] >= 0.05 * capped["conv_gemm_flops"]
    assert capped["sqnr_db"] >= 30.0
