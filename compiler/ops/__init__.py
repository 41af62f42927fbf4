"""Op definitions; importing this package registers every op (see README.md here).

Public helpers for other modules:
  canonicalize_attrs(kind, attrs, input_types, num_outputs=None) -> attrs   (build_op calls it)
  broadcast_shapes(*shapes) -> tuple           count_flops(op) -> int
  conv_output_shape / conv_transpose_output_shape / pool_output_shape
  normalize_slice(shape, starts, ends, axes, steps) -> canonical Slice attribute lists
  equal_split(dim, n) -> ONNX's default Split sizes
  lstm_dims(op) -> (seq, batch, input_size, num_directions, hidden); reduced_shape(shape, axes, keep)
  blocked layout NCHW{c}c (LAYOUT_KINDS take a `layout` attr): see layout.py
"""
from . import elementwise, fused, layout, movement, nn, pooling, rnn  # noqa: F401  (register)
from ._util import broadcast_shapes, fmt
from .canonical import canonicalize_attrs, equal_split
from .elementwise import BINARY_KINDS, ELEMENTWISE_KINDS, UNARY_KINDS
from .flops import count_flops
from .layout import LAYOUT_KINDS
from .movement import normalize_slice, slice_length
from .pooling import POOL_KINDS, REDUCE_KINDS, reduced_shape
from .rnn import lstm_dims
from .spatial import conv_output_shape, conv_transpose_output_shape, pool_output_shape

# pure data movement (no arithmetic); LayoutTransform is one, though it is not ONNX's
MOVEMENT_KINDS = movement.MOVEMENT_KINDS + ("LayoutTransform",)
# edgecc's own attributes on ONNX ops: the text IR prints them only when they differ from
# their default, so graphs without them print exactly as ONNX-shaped graphs always did
QUIET_ATTRS = {kind: ("layout",) for kind in LAYOUT_KINDS}

__all__ = ["canonicalize_attrs", "broadcast_shapes", "count_flops", "conv_output_shape",
           "conv_transpose_output_shape", "pool_output_shape", "normalize_slice", "slice_length",
           "equal_split", "fmt", "reduced_shape", "lstm_dims", "UNARY_KINDS", "BINARY_KINDS", "ELEMENTWISE_KINDS",
           "MOVEMENT_KINDS", "POOL_KINDS", "REDUCE_KINDS", "LAYOUT_KINDS", "QUIET_ATTRS"]
