"""Differential check of one ONNX model: edgecc's bundles (each -O level, x86_64 here and
arm64 under qemu) against onnxruntime (ORT_DISABLE_ALL), with the ONNX reference evaluator in
float64 as the arbiter when they disagree.

A verdict per (level, target):
  match     outputs within TOLERANCE (relative to each output's scale) of onnxruntime, or of
            the exact (float64) result when onnxruntime is the one far from it (e.g. its
            Resize with align_corners at scales that are not whole; `detail` says so)
  wrong     further than TOLERANCE from the exact result, and further than onnxruntime is
  crash     the build or the run failed in a way that is not a clear refusal (exit 70, any
            Python exception, an "invalid model" error for a valid model, a runtime error)
  refused   edgecc declined the model with a message naming the node and the reason
  invalid   onnxruntime cannot run the model (the generator's fault: not counted)
"""
from __future__ import annotations

import math
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

TOLERANCE = 1e-3


@dataclass
class Verdict:
    status: str
    level: int
    target: str
    detail: str = ""


def onnxruntime_outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def exact_outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    """The ONNX reference evaluator on the model converted to float64."""
    import onnx.reference
    m = onnx.ModelProto()
    m.CopyFrom(model)
    f32, f64 = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type == f32:
            v.type.tensor_type.elem_type = f64
    for i, t in enumerate(m.graph.initializer):
        if t.data_type == f32:
            m.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(
                onnx.numpy_helper.to_array(t).astype(np.float64), t.name))
    ev = onnx.reference.ReferenceEvaluator(m)
    return ev.run(None, {k: v.astype(np.float64) if v.dtype == np.float32 else v
                         for k, v in feeds.items()})


def error(got, want) -> float:
    """Max |got - want| relative to max |want| (inf on a shape or NaN/inf disagreement)."""
    from edgecc.numerics import compare
    return compare(np.asarray(got), np.asarray(want)).rel


def judge(got: list, theirs: list, exact_fn) -> tuple[str, str]:
    """(status, detail) for a bundle's outputs against onnxruntime's (exact_fn() gives the
    float64 arbiter, computed only when needed)."""
    if len(got) != len(theirs):
        return "wrong", f"{len(got)} outputs, onnxruntime {len(theirs)}"
    errs = [error(g, t) for g, t in zip(got, theirs)]
    if max(errs, default=0.0) <= TOLERANCE:
        return "match", ""
    exact = exact_fn()
    for i, (g, t, x) in enumerate(zip(got, theirs, exact)):
        if errs[i] <= TOLERANCE:
            continue
        ours, ort_err = error(g, x), error(t, x)
        if not (ours <= TOLERANCE or (math.isfinite(ours) and ours <= 2 * ort_err)):
            return "wrong", (f"output {i}: {ours:.3g} from the exact result (onnxruntime "
                             f"{ort_err:.3g}, {errs[i]:.3g} apart)")
    return "match", "onnxruntime departs from the exact (float64) result"


def check(model: onnx.ModelProto, feeds: dict, levels=(0, 1, 2, 3), targets=("x86_64",),
          mcpu: str | None = None, workdir: str | Path | None = None) -> list[Verdict]:
    """Verdicts of every (level, target) build of `model`."""
    import edgecc
    from edgecc.errors import EdgeccError, ModelError
    try:
        theirs = onnxruntime_outputs(model, feeds)
    except Exception as e:
        return [Verdict("invalid", -1, "", f"onnxruntime: {str(e).splitlines()[0][:200]}")]
    cache = {}

    def exact():
        if "x" not in cache:
            cache["x"] = exact_outputs(model, feeds)
        return cache["x"]
    out = []
    with tempfile.TemporaryDirectory(prefix="edgecc-fuzz-", dir=workdir) as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, path)
        for target in targets:
            for level in levels:
                where = Path(tmp) / f"b{level}.{target}"
                try:
                    art = edgecc.compile(str(path), target=target, opt_level=level,
                                         outdir=str(where),
                                         mcpu=mcpu if target == "x86_64" else None)
                    got = art.run(feeds)
                except ModelError as e:
                    # a refusal must name a node and a reason; an "invalid model" verdict on
                    # a model onnxruntime runs is a crash (exit 2 for a valid model)
                    status = "refused" if "node '" in e.message and "invalid" not in \
                        e.message.lower() and "Fused" not in e.message else "crash"
                    out.append(Verdict(status, level, target, e.message[:300]))
                    continue
                except EdgeccError as e:
                    out.append(Verdict("crash", level, target,
                                       f"{type(e).__name__}: {e.message[:300]}"))
                    continue
                except Exception as e:
                    tb = traceback.format_exc().splitlines()[-3:]
                    out.append(Verdict("crash", level, target,
                                       f"{type(e).__name__}: {str(e)[:200]} | {' / '.join(tb)}"))
                    continue
                status, detail = judge(got, theirs, exact)
                out.append(Verdict(status, level, target, detail))
    return out
