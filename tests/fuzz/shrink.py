"""Reduce a failing ONNX graph to its few guilty nodes (delta debugging on the graph).

    small = shrink(model, feeds, still_fails)     # still_fails(model, feeds) -> bool

Steps, each kept only while the failure persists: (1) cut the graph after each node in turn
(its outputs become the graph's only outputs; everything after it goes), keeping the
earliest cut that still fails; (2) drop single nodes whose output has the shape of their first
input by wiring readers to that input; (3) drop unused initializers and inputs.
"""
from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import helper


def _shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + \
            list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = tuple(d.dim_value for d in dims)
    for t in model.graph.initializer:
        out[t.name] = tuple(t.dims)
    return out


def _rebuild(model, nodes, outputs, shapes) -> onnx.ModelProto:
    used = {i for n in nodes for i in n.input} | set(outputs)
    inits = [t for t in model.graph.initializer if t.name in used]
    inputs = [v for v in model.graph.input if v.name in used]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, shapes.get(o))
            for o in outputs]
    g = helper.make_graph(nodes, model.graph.name, inputs, outs, inits)
    m = helper.make_model(g, opset_imports=model.opset_import)
    m.ir_version = model.ir_version
    return m


def shrink(model: onnx.ModelProto, feeds: dict,
           still_fails: Callable[[onnx.ModelProto, dict], bool]) -> onnx.ModelProto:
    shapes = _shapes(model)
    nodes = list(model.graph.node)
    best = model
    # (1) the earliest prefix whose last node's results still show the failure
    for k in range(1, len(nodes) + 1):
        cand = _rebuild(model, nodes[:k], [o for o in nodes[k - 1].output if o], shapes)
        if _fails(cand, feeds, still_fails):
            best = cand
            break
    # (2) drop pass-through-able nodes one at a time
    changed = True
    while changed:
        changed = False
        nodes = list(best.graph.node)
        outputs = [o.name for o in best.graph.output]
        for i, n in enumerate(nodes):
            if not n.input or len(n.output) != 1 or n.output[0] in outputs:
                continue
            src, dst = n.input[0], n.output[0]
            if src not in shapes or shapes.get(src) != shapes.get(dst):
                continue
            rest = []
            for m in nodes[:i] + nodes[i + 1:]:
                c = onnx.NodeProto()
                c.CopyFrom(m)
                c.input[:] = [src if x == dst else x for x in c.input]
                rest.append(c)
            cand = _rebuild(best, rest, outputs, shapes)
            if _fails(cand, feeds, still_fails):
                best, changed = cand, True
                break
    return best


def _fails(model, feeds, still_fails) -> bool:
    names = {v.name for v in model.graph.input}
    try:
        onnx.checker.check_model(model)
        return still_fails(model, {k: v for k, v in feeds.items() if k in names})
    except Exception:
        return False
