"""lower-batchnorm: a BatchNormalization that fuse-conv-bn could not fold becomes a
per-channel multiply-add, which fuse-kernels can then merge with its neighbours.

  BN(x) = x*s + t      s = scale / sqrt(var + eps),  t = B - mean*s   (shaped [C,1,...,1])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecc.ops import build_op
from edgecc.pass_registry import register_pass

from ._rewrite import ROUNDING_TOLERANCE, const, record_refusal, replace


@register_pass
@dataclass(frozen=True)
class LowerBatchNorm:
    name = "lower-batchnorm"
    tolerance = ROUNDING_TOLERANCE

    def run(self, graph, ctx) -> bool:
        changed = False
        for op in [op for op in graph.ops if op.kind == "BatchNormalization"]:
            stats = [const(v) for v in op.inputs[1:]]
            if any(a is None for a in stats):
                record_refusal(ctx, self.name, op, "statistics are not constants")
                continue
            scale, bias, mean, var = (a.astype(np.float64) for a in stats)
            s = scale / np.sqrt(var + op.attrs["epsilon"])
            t = bias - mean * s
            x, y = op.inputs[0], op.output
            shape = (-1,) + (1,) * (x.type.rank - 2)          # channel axis 1 of x
            sv = graph.add_param(f"{op.name or 'bn'}_scale", s.reshape(shape).astype(
                y.type.np_dtype))
            tv = graph.add_param(f"{op.name or 'bn'}_shift", t.reshape(shape).astype(
                y.type.np_dtype))
            mul = build_op("Mul", [x, sv], name=f"{op.name}_mul",
                           out_names=[graph.fresh_name(f"{y.name}_scaled")])
            add = build_op("Add", [mul.output, tv], name=op.name,
                           out_names=[graph.fresh_name(f"{y.name}_bn")])
            if replace(graph, op, [mul, add], [add.output]):
                changed = True
        if changed:
            graph.remove_unused_params()
        return changed
