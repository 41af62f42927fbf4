"""Schedules for lowered kernels: `schedule(func, anchor, ctx)` applies the rule registered
for the kernel's anchor op kind (its first non-elementwise op, e.g. "Conv"), else the generic
CPU schedule (primitives.generic_schedule). A rule that raises falls back to the generic
schedule (recorded in FALLBACKS).

Per-class rules (one file each; primitives.py has the registry and what they share):
  schedule_conv.py          Conv (direct, pointwise, grouped, depthwise) and ConvTranspose
                            with kernel == stride: MI x VW register tiles sized from the target;
  schedule_conv_blocked.py  Conv, pools and LayoutTransform in the blocked layout NCHW{c}c;
  schedule_pool.py          GlobalAveragePool: vectorized partial sums (rfactor), pools;
  schedule_dense.py         Gemm, MatMul: K-vectorized matrix-vector, else MI x VW tiles;
  schedule_rnn.py           LSTM.
Rules size tiles for ctx.target (compiler/target.py), never for the host. Add one for an op
class with

    @schedule_rule("Conv")
    def conv_schedule(sch: Schedule, ctx: ScheduleContext) -> None: ...
"""
from __future__ import annotations

from tvm.s_tir import Schedule

from edgecc.backends.tvm import (schedule_conv, schedule_dense, schedule_pool,  # noqa: F401
                                 schedule_rnn)
from edgecc.backends.tvm.primitives import (FALLBACKS, SCHEDULE_RULES, ScheduleContext,
                                            generic_schedule)


def schedule(func, anchor: str | None, ctx: ScheduleContext):
    """`func` scheduled by the rule of `anchor` for ctx.target (the generic schedule when
    there is none or it does not fit)."""
    rule = SCHEDULE_RULES.get(anchor or "")
    if rule is not None:
        sch = Schedule(func)
        try:
            rule(sch, ctx)
            return sch.mod["main"]
        except Exception as e:  # the tuned rule does not fit this instance: generic schedule
            FALLBACKS.append((anchor, f"{type(e).__name__}: {str(e).strip()[:200]}"))
    sch = Schedule(func)
    generic_schedule(sch, ctx)
    return sch.mod["main"]
