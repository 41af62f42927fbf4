"""Conv kernels' scratch (schedule_conv.pad_per_task): the padded / phase-split input is
copied per parallel task, a few rows of it, not as a whole-input copy; a 1x1 strided conv's
task copies only the one phase and row it reads."""
from __future__ import annotations

import numpy as np
import pytest

from edgecc.backends.tvm.build import KernelSet
from edgecc.ir import Graph, TensorType, Value
from edgecc.ops import build_op
from tests.targets import X86, target_id


def conv_graph(cin, cout, size, k, stride, pad):
    g = Graph("conv")
    x = Value("x", TensorType("f32", (1, cin, size, size)))
    g.inputs.append(x)
    w = g.add_param("w", np.ones((cout, cin, k, k), np.float32))
    op = build_op("Conv", [x, w], {"strides": [stride] * 2, "pads": [pad] * 4}, name="conv")
    g.ops.append(op)
    g.outputs += op.outputs
    return g


@pytest.mark.parametrize("cin,cout,size,k,stride,pad,rows,phases", [
    (32, 32, 56, 3, 1, 1, 3, 1),          # 3 padded rows per output row
    (32, 64, 56, 3, 2, 1, 3, 2),          # strided: 3 rows, both phases
    (32, 64, 56, 1, 2, 0, 1, 1)])         # 1x1 stride 2: one row of one phase
@pytest.mark.parametrize("target", X86, ids=target_id)
def test_pad_scratch_is_per_task_rows(cin, cout, size, k, stride, pad, rows, phases, target):
    ws = KernelSet(conv_graph(cin, cout, size, k, stride, pad), target).scratch()[0]
    whole = 4 * cin * (size + 2 * pad + 16) ** 2          # a whole padded input (+ slack)
    per_task = 4 * cin * rows * phases * (size // stride + 2 * pad + 16)   # (+ slack)
    assert ws.top == 0 and 0 < ws.per_task <= per_task < whole // 8, ws
