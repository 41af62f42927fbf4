"""Fused: run the body graph with the op's operands bound to the body inputs in order."""
from __future__ import annotations

from .registry import kernel


@kernel("Fused")
def fused(op, ins):
    from .executor import run_bound  # the executor imports the registry, not kernels
    body = op.attrs["body"]
    if len(ins) != len(body.inputs):
        raise ValueError(f"{len(ins)} operand(s) for a body with {len(body.inputs)} input(s)")
    return run_bound(body, ins)
