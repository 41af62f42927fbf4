"""Fused: one compiled kernel whose semantics is its body graph."""
from __future__ import annotations

from ..errors import ModelError
from ..ir import Graph
from ..opdef import REQUIRED, OpRuleError, opdef
from .checks import verify_graph


@opdef("Fused", ["inputs*"], {"body": REQUIRED, "kernel": ""}, outputs="*",
       traits=("quantized",))      # its body's ops check their quantized operands
def _fused(op):
    """Fused(inputs*): results are the body's outputs; operands bind to body inputs in order."""
    body, label = op.attrs["body"], op.attrs["kernel"]
    if not isinstance(body, Graph):
        raise OpRuleError(f"Fused: body must be a Graph, got {type(body).__name__}")
    if not isinstance(label, str):
        raise OpRuleError(f"Fused: kernel label must be a string, got {label!r}")
    if len(op.inputs) != len(body.inputs):
        raise OpRuleError(f"Fused: {len(op.inputs)} operand(s) but the body has "
                          f"{len(body.inputs)} input(s)")
    for i, (v, b) in enumerate(zip(op.inputs, body.inputs)):
        if v is None:
            raise OpRuleError(f"Fused: operand {i} is missing")
        if v.type != b.type:
            raise OpRuleError(f"Fused: operand {i} %{v.name} is {v.type} but body input "
                              f"%{b.name} is {b.type}")
    if body.params:
        raise OpRuleError(f"Fused: body holds params {[p.name for p in body.params]}; weights "
                          f"must be operands of the Fused op")
    nested = [o for o in body.ops if o.kind == "Fused"]
    if nested:
        raise OpRuleError(f"Fused: body contains a nested Fused op ({nested[0].describe()})")
    if not body.ops or not body.outputs:
        raise OpRuleError("Fused: body must have at least one op and one output")
    try:
        verify_graph(body)
    except ModelError as e:
        raise OpRuleError(f"Fused: body: {e.message}") from None
    return [v.type for v in body.outputs]
