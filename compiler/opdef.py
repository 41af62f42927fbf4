"""Op declarations: one per op kind, with operands, attributes + defaults, traits, and the
functions that define it: type/shape inference (the verifier rule), and optional hooks for
FLOPs, canonicalization and no-op detection.

    @opdef("LeakyRelu", inputs=["X"], attrs={"alpha": 0.01}, traits={"elementwise"},
           onnx="same")
    def _leaky_relu(op):            # inference: returns the output types
        return [op.inputs[0].type]

Operand names ending in "?" are optional (None in op.inputs), a name ending in "*" is
variadic. Attributes whose default is REQUIRED must be given. Inference raises
`OpRuleError` with the rule that was broken. Op definitions live in compiler/ops/*.py and
register when `edgecc.ops` is imported; building and verifying ops (build_op, verify_graph)
lives there too (compiler/ops/checks.py). This module is the leaf they all share.

Traits (TRAITS) are the op groupings passes and backends ask about (`has_trait(op,
"elementwise")`, `kinds_with("view")`): declared once here with the op, never as lists
elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


class OpRuleError(Exception):
    """Raised by an inference function: the message states the broken rule."""


TRAITS = {
    "elementwise": "result element i is a function of the operands' (broadcast) elements i",
    "view": "the result is the operand's bytes under another shape: no kernel, the memory "
            "plan aliases them (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout)",
    "reshape": "a view that only changes the shape of a contiguous buffer",
    "identity": "the result is the operand itself (inference mode)",
    "movement": "pure data movement: no arithmetic, 0 FLOPs",
    "injective": "each result element reads a few operand elements at remapped indices: a "
                 "kernel can read through it instead of materializing it",
    "inplace_ok": "may write its result over an operand of the same shape and element size "
                  "that it reads only elementwise",
    "layout_aware": "has a `layout` attribute: NCHW or the blocked NCHW{c}c",
    "pool": "a per-channel window or global pool over the spatial axes",
    "reduction": "reduces along axes; elementwise producers can run inside its kernel",
    "contraction": "a sum of products over weights (conv, gemm): anchors a kernel whose "
                   "epilogue (bias, activation, residual) runs on its result",
    "affine_foldable": "a per-output-channel scale and shift after it fold into its weights "
                       "and bias",
    "quant_transparent": "moves or selects values without arithmetic: a quantized operand's "
                         "result keeps its scale and zero point",
    "quantized": "an integer op: computes on quantized operands, whose scale and zero point "
                 "are part of its definition",
}


@dataclass(frozen=True)
class OpDef:
    kind: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any]
    outputs: int | str                  # a count, or "*" when the op decides (Split)
    infer: Callable                     # (Op) -> list[TensorType]; raises OpRuleError
    doc: str
    traits: frozenset[str] = frozenset()
    # optional hooks
    flops: Callable | None = None       # (Op) -> int; default by traits (flops.py)
    canonicalize: Callable | None = None  # (attrs, input types, num_outputs) -> None, fills
    noop: Callable | None = None        # (Op) -> bool: the result equals operand 0
    onnx: str | None = None             # "same": imported/exported as the ONNX op of the same
    #                                     name with the attributes declared here
    onnx_consts: tuple[tuple[int, str], ...] = ()   # ONNX operand positions that must be
    #                                     constant and are held as attributes (TopK's K -> k)
    onnx_form: Callable | None = None   # (Op, opset) -> (first opset, ONNX attributes) when
    #                                     the ONNX spelling depends on the opset

    @property
    def min_inputs(self) -> int:
        return sum(1 for n in self.inputs if not n.endswith(("?", "*")))

    @property
    def variadic(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    def complete_attrs(self, attrs: dict[str, Any], where: str = "") -> dict[str, Any]:
        """attrs with defaults filled in; unknown or missing required attributes are errors."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise OpRuleError(f"unknown attribute(s) {unknown} for {self.kind}; "
                              f"known: {sorted(self.attrs)}")
        full = {}
        for name, default in self.attrs.items():
            if name in attrs:
                full[name] = attrs[name]
            elif default is REQUIRED:
                raise OpRuleError(f"{self.kind} requires attribute '{name}'")
            else:
                full[name] = default
        return full


OPS: dict[str, OpDef] = {}


def opdef(kind: str, inputs: list[str], attrs: dict[str, Any] | None = None,
          outputs: int | str = 1, *, traits=(), flops=None, canonicalize=None, noop=None,
          onnx: str | None = None, onnx_consts: dict[int, str] | None = None,
          onnx_form=None):
    """Declare op `kind`; decorates its inference function."""
    unknown = set(traits) - set(TRAITS)
    assert not unknown, f"op {kind}: unknown traits {sorted(unknown)}"

    def register(infer):
        assert kind not in OPS, f"op {kind} defined twice"
        OPS[kind] = OpDef(kind, tuple(inputs), dict(attrs or {}), outputs, infer,
                          (infer.__doc__ or "").strip(), frozenset(traits), flops,
                          canonicalize, noop, onnx, tuple(sorted((onnx_consts or {}).items())),
                          onnx_form)
        return infer
    return register


def get_opdef(kind: str) -> OpDef | None:
    """The declaration of `kind` (ops register when edgecc.ops is imported)."""
    return OPS.get(kind)


def has_trait(op_or_kind, trait: str) -> bool:
    """Whether an op (or op kind) has `trait` (see TRAITS)."""
    assert trait in TRAITS, trait
    kind = op_or_kind if isinstance(op_or_kind, str) else op_or_kind.kind
    d = OPS.get(kind)
    return d is not None and trait in d.traits


def kinds_with(trait: str) -> frozenset[str]:
    """Every op kind that has `trait`."""
    assert trait in TRAITS, trait
    return frozenset(k for k, d in OPS.items() if trait in d.traits)
