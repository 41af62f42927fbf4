"""Default schedule of the LSTM kernel (lower_rnn: unrolled over the sequence)."""
from __future__ import annotations

from tvm.s_tir import Schedule

from edgecc.backends.tvm.primitives import (ScheduleContext, is_reduction, schedule_injective,
                                            schedule_reduction, schedule_rule)


@schedule_rule("LSTM")
def lstm_schedule(sch: Schedule, ctx: ScheduleContext) -> None:
    """Keep every per-step state (lstm_h*/lstm_c*) and product materialized: inlining them
    would recompute the whole recurrence at every use. Blocks are scheduled one by one."""
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if is_reduction(sch, blk):
            schedule_reduction(sch, blk)
        else:
            schedule_injective(sch, blk)
