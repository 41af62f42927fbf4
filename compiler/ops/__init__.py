"""Op definitions; importing this package registers every op (see README.md here).

Building and checking ops (checks.py):
  build_op(kind, inputs, attrs, name, out_names) -> Op     verify_graph(graph), check_op(op)
  infer_types(op), is_noop(op)
Op facts (compiler/opdef.py): get_opdef(kind), has_trait(op, trait), kinds_with(trait)
Public helpers for other modules:
  canonicalize_attrs(kind, attrs, input_types, num_outputs=None) -> attrs   (build_op calls it)
  broadcast_shapes(*shapes) -> tuple           count_flops(op) -> int
  conv_output_shape / conv_transpose_output_shape / pool_output_shape
  normalize_slice(shape, starts, ends, axes, steps) -> canonical Slice attribute lists
  equal_split(dim, n) -> ONNX's default Split sizes
  lstm_dims(op) -> (seq, batch, input_size, num_directions, hidden); reduced_shape(shape, axes, keep)
  blocked layout NCHW{c}c (ops with the layout_aware trait take a `layout` attr): layout.py
"""
from ..opdef import OPS, get_opdef, has_trait, kinds_with
from . import elementwise, fused, layout, movement, nn, pooling, quant, rnn  # noqa: F401
from ._util import broadcast_shapes, fmt
from .canonical import canonicalize_attrs
from .checks import build_op, check_op, infer_types, is_noop, verify_graph
from .flops import count_flops
from .movement import equal_split, normalize_slice, slice_length
from .pooling import reduced_shape
from .rnn import lstm_dims
from .spatial import conv_output_shape, conv_transpose_output_shape, pool_output_shape

# edgecc's own attributes on ONNX ops: the text IR prints them only when they differ from
# their default, so graphs without them print exactly as ONNX-shaped graphs always did
QUIET_ATTRS = {kind: ("layout",) for kind in kinds_with("layout_aware")}

__all__ = ["OPS", "get_opdef", "has_trait", "kinds_with", "build_op", "check_op",
           "infer_types", "is_noop", "verify_graph", "canonicalize_attrs", "broadcast_shapes",
           "count_flops", "conv_output_shape", "conv_transpose_output_shape",
           "pool_output_shape", "normalize_slice", "slice_length", "equal_split", "fmt",
           "reduced_shape", "lstm_dims", "QUIET_ATTRS"]
