"""`edgecc check`: the reference executor against onnxruntime on the same inputs."""
from __future__ import annotations

import time

import numpy as np

from .errors import NumericError, UsageError


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
    from .driver import seeded_inputs
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


def check_model(model_path: str, input_shapes: dict, given: dict[str, np.ndarray],
                seed: int = 0, tolerance: float = 1e-4, out=print) -> int:
    from .driver import load_model, relative_error
    from .kernels import run_graph
    t0 = time.perf_counter()
    graph, _ = load_model(model_path, input_shapes)
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
    worst = 0.0
    for v, got, want in zip(graph.outputs, ours, theirs):
        abs_err, rel_err = relative_error(got, want)
        worst = max(worst, rel_err)
        verdict = "ok" if rel_err <= tolerance else "MISMATCH"
        out(f"  {v.name}: {list(got.shape)} max abs err {abs_err:.3g}, "
            f"rel to scale {rel_err:.3g}  {verdict}")
    if worst > tolerance:
        raise NumericError(f"{model_path}: reference executor differs from onnxruntime by "
                           f"{worst:.3g} (relative to scale) > tolerance {tolerance:g}")
    return 0
