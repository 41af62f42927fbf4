"""`edgecc check`: the reference executor against onnxruntime on the same inputs."""
from __future__ import annotations

import time

import numpy as np

from .errors import NumericError, UsageError
from .kernels import run_graph


def onnxruntime_outputs(model_path: str, feeds: dict[str, np.ndarray],
                        disable_optimizations: bool = False) -> list[np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if disable_optimizations:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def bind_inputs(graph, given: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Given arrays (checked against the graph's inputs) completed with seeded random ones."""
    from .numerics import seeded_inputs
    expected = {v.name: v for v in graph.inputs}
    for name, array in given.items():
        if name not in expected:
            raise UsageError(f"--input '{name}' is not an input of the model; inputs are "
                             f"{', '.join(expected)}")
        want = expected[name].type
        if tuple(array.shape) != want.shape:
            raise UsageError(f"--input {name}: shape {list(array.shape)} but the model expects "
                             f"{list(want.shape)} (bind dynamic dims with --input-shape)")
        if array.dtype != want.np_dtype:
            raise UsageError(f"--input {name}: dtype {array.dtype} but the model expects "
                             f"{want.np_dtype}")
    feeds = seeded_inputs(graph, seed)
    feeds.update(given)
    return feeds


# float64 arbitration explains fp32 rounding amplified by an ill-conditioned output (PP-OCRv4
# det on noise: onnxruntime 1.7e-4 off); a disagreement this large is a different answer (a
# different pixel read, a wrong formula): a mismatch whatever the float64 run says, since that
# run shares the reference executor's semantics
ROUNDING_GAP = 1e-2


def check_model(model_path: str, input_shapes: dict, given: dict[str, np.ndarray],
                seed: int = 0, tolerance: float = 1e-4, out=print) -> int:
    from .driver import load_model
    from .numerics import compare
    t0 = time.perf_counter()
    graph, _ = load_model(model_path, input_shapes, {k: a.shape for k, a in given.items()})
    t_import = time.perf_counter() - t0
    feeds = bind_inputs(graph, given, seed)
    t0 = time.perf_counter()
    ours = run_graph(graph, feeds)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = onnxruntime_outputs(model_path, feeds)
    t_ort = time.perf_counter() - t0
    out(f"{model_path}: import {t_import:.2f}s, reference executor {t_ref:.2f}s, "
        f"onnxruntime {t_ort:.3f}s")
    errors = [compare(got, want) for got, want in zip(ours, theirs)]
    exact = None
    if max((e.rel for e in errors), default=0.0) > tolerance:
        # Arbitrate with float64 execution: an ill-conditioned output (e.g. a Sigmoid far in
        # its tail) magnifies fp32 rounding; only the side far from the exact result is wrong.
        exact = run_graph(promote_to_f64(graph), {k: a.astype(np.float64) if a.dtype ==
                                                   np.float32 else a for k, a in feeds.items()})
    spec = {}

    def onnx_reference(i):
        """Output i of the ONNX reference evaluator (computed once, only when needed)."""
        if "outs" not in spec:
            spec["outs"] = onnx_reference_outputs(model_path, input_shapes, feeds)
        return spec["outs"][i] if spec["outs"] is not None else None
    worst = 0.0
    for i, (v, got) in enumerate(zip(graph.outputs, ours)):
        abs_err, rel_err, _ = errors[i]
        line = f"  {v.name}: {list(got.shape)} max abs err {abs_err:.3g}, rel to scale {rel_err:.3g}"
        if rel_err > tolerance:
            ours_exact = compare(got, exact[i]).rel
            ort_exact = compare(theirs[i], exact[i]).rel
            line += f"; vs float64: edgecc {ours_exact:.3g}, onnxruntime {ort_exact:.3g}"
            ref = onnx_reference(i) if rel_err > ROUNDING_GAP else None
            if ours_exact <= tolerance and ort_exact > ours_exact and rel_err <= ROUNDING_GAP:
                line += "  ok (onnxruntime is further from the float64 result)"
            elif ref is not None and compare(got, ref).rel <= tolerance < \
                    compare(theirs[i], ref).rel:
                line += ("  ok (onnxruntime departs from the ONNX reference evaluator, which "
                         "edgecc agrees with: it follows the ONNX specification)")
            else:
                worst = max(worst, rel_err)
                line += "  MISMATCH"
        else:
            line += "  ok"
        out(line)
    if worst > tolerance:
        raise NumericError(f"{model_path}: reference executor differs from onnxruntime by "
                           f"{worst:.3g} (relative to scale) > tolerance {tolerance:g}")
    return 0


def onnx_reference_outputs(model_path: str, input_shapes: dict, feeds: dict):
    """The ONNX reference evaluator's outputs (onnx.reference, an independent implementation
    of the specification), or None when it cannot run the model."""
    try:
        import onnx
        import onnx.reference
        model = onnx.load(model_path)
        return onnx.reference.ReferenceEvaluator(model).run(None, feeds)
    except Exception:
        return None


def promote_to_f64(graph):
    """A copy of `graph` computing in float64 wherever it computed in float32."""
    from .ir import TensorType
    g = graph.clone()
    for v in g.values():
        if v.type.dtype == "f32":
            v.type = TensorType("f64", v.type.shape)
            if v.data is not None:
                v.data = v.data.astype(np.float64)
    for op in g.ops:
        if op.kind == "Cast" and op.attrs["to"] == "f32":
            op.attrs["to"] = "f64"
    return g
