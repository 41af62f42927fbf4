"""conv1d-as-2d: a 1-D Conv runs as the 2-D Conv of a one-row image.

    Conv(x[N,C,L], W[M,C/g,k]) → Reshape[N,M,L'](Conv(Reshape[N,C,1,L](x), W[M,C/g,1,k]))

with kernel_shape [1,k], strides [1,s], dilations [1,d], pads [0,p0,0,p1], the same group.
The 2-D conv gets the fast schedules and the blocked channel layout (audio front ends, TCNs,
keyword spotters: a 1-D conv on the generic schedule ran ~25x slower than the same conv in
2-D). The Reshapes are views (no copy). Only constant weights (the 2-D weights are a new
constant) and float convs; a 1-D conv whose bias is an activation stays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecc.ir import Graph
from edgecc.ops import build_op, has_trait
from edgecc.pass_registry import register_pass

from ._rewrite import const


@register_pass
@dataclass(frozen=True)
class Conv1dAs2d:
    name = "conv1d-as-2d"
    tolerance = 1e-5              # the same sums (summation order may differ)

    def run(self, graph: Graph, ctx) -> bool:
        changed = False
        for op in list(graph.ops):
            if op.kind != "Conv" or has_trait(op, "quantized") or len(op.outputs) != 1:
                continue
            x, w = op.inputs[0], op.inputs[1]
            b = op.inputs[2] if len(op.inputs) > 2 else None
            if x.type.rank != 3 or x.type.dtype != "f32" or const(w) is None or \
                    (b is not None and const(b) is None):
                continue
            a = op.attrs
            n, c, length = x.type.shape
            y = op.outputs[0]
            i = graph.ops.index(op)
            x4 = build_op("Reshape", [x], {"shape": [n, c, 1, length]},
                          name=f"{op.name}/as_2d", out_names=[graph.fresh_name(f"{x.name}_2d")])
            w4 = graph.add_param(graph.fresh_name(f"{w.name}_2d"),
                                 np.asarray(w.data).reshape(w.type.shape[:2] + (1,) +
                                                            w.type.shape[2:]))
            conv = build_op("Conv", [x4.output, w4] + ([b] if b is not None else []),
                            {"kernel_shape": [1] + list(a["kernel_shape"]),
                             "strides": [1] + list(a["strides"]),
                             "dilations": [1] + list(a["dilations"]),
                             "pads": [0, a["pads"][0], 0, a["pads"][1]], "group": a["group"]},
                            name=op.name, out_names=[graph.fresh_name(f"{y.name}_2d")])
            back = build_op("Reshape", [conv.output], {"shape": list(y.type.shape)},
                            name=f"{op.name}/as_1d", out_names=[graph.fresh_name(y.name)])
            graph.ops[i:i + 1] = [x4, conv, back]
            graph.replace_all_uses(y, back.output)
            back.output.name, y.name = y.name, f"{y.name}.dead"
            changed = True
        return changed
