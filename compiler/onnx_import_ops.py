"""Per-op translation of ONNX nodes (opsets 7–22: opset 22 only widened type constraints) into canonical edgecc ops.

A converter receives a NodeCtx (onnx_import.py) and returns the Values of the node's outputs.
It resolves everything compiler/ops/README.md wants as attributes: shape operands, auto_pad,
negative axes, old-opset attribute forms. Shape/Size/Constant/ConstantOfShape/Range are computed
here directly. A `check` function, run before any work, returns a hint when a node cannot be
imported at all, so every unsupported node is reported at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from .dtypes import is_float, onnx_to_dtype
from .ops import OPS, QUIET_ATTRS, kinds_with
from .onnx_import_check import MAX_ELEMENTS, dtype_name, tensor_to_array


@dataclass(frozen=True)
class Converter:
    fn: Callable
    check: Callable | None = None   # (node, attrs, opset, used) -> hint | None


CONVERTERS: dict[str, Converter] = {}


def converter(*kinds: str, check=None):
    def register(fn):
        for k in kinds:
            CONVERTERS[k] = Converter(fn, check)
        return fn
    return register


_HINTS = {
    "Loop": "control flow is not supported; export the model with loops unrolled",
    "If": "control flow is not supported; export the model with a fixed branch",
    "Scan": "control flow is not supported",
    "NonZero": "its output shape depends on data; edgecc needs static shapes",
    "NonMaxSuppression": "its output shape depends on data; run it outside the compiled model",
}


def unsupported_hint(node: onnx.NodeProto, opset: int, used: set[str]) -> str | None:
    """Why `node` cannot be imported, or None when it can (checked before any work)."""
    conv = CONVERTERS.get(node.op_type)
    if conv is None:
        return _HINTS.get(node.op_type, "no edgecc translation for this op (`edgecc-opt "
                                        "--list-ops` lists the supported ones)")
    if conv.check is None:
        return None
    try:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        return conv.check(node, attrs, opset, used)
    except Exception:   # malformed attributes: translating the node will report them
        return None


def _extra_outputs_used(first_extra: int, what: str):
    def check(node, attrs, opset, used):
        if any(o and o in used for o in node.output[first_extra:]):
            return f"its {what} output is used; only inference-mode results are supported"
        return None
    return check


# ---- helpers ---------------------------------------------------------------------------------
def _axis(ctx, axis: int, rank: int, what: str = "axis") -> int:
    a = int(axis)
    if not -rank <= a < rank:
        raise ctx.error(f"{what} {axis} is out of range for rank {rank}")
    return a + rank if a < 0 else a


def _axes(ctx, axes, rank: int, what: str = "axes") -> list[int]:
    out = sorted(_axis(ctx, a, rank, what) for a in axes)
    if len(set(out)) != len(out):
        raise ctx.error(f"{what} {list(axes)} has duplicates")
    return out


def _ints(a) -> list[int]:
    return [int(x) for x in np.asarray(a).reshape(-1)]


def _floats(a) -> list[float]:
    return [float(x) for x in np.asarray(a).reshape(-1)]


def _scalar(a, dtype: str):
    x = np.asarray(a).reshape(-1)
    if x.size != 1:
        raise ValueError("expected one value")
    return float(x[0]) if is_float(dtype) or x.dtype.kind == "f" else int(x[0])


# ---- ops that are ONNX's as they are (declared with onnx="same") ------------------------------
def _same(ctx):
    """The ONNX node becomes the op of the same name with the ONNX attributes it declares
    (not edgecc's own, such as `layout`); operands it holds as attributes (onnx_consts) must
    be constants."""
    d = OPS[ctx.kind]
    keep = set(d.attrs) - set(QUIET_ATTRS.get(ctx.kind, ()))
    attrs = {k: v for k, v in ctx.attrs.items() if k in keep}
    consts = dict(d.onnx_consts)
    for i, attr in consts.items():
        a = ctx.const(i, attr)
        if a is not None:
            attrs[attr] = _scalar(a, "i64") if a.size == 1 else _ints(a)
    ins = [ctx.input(i) for i in range(ctx.n_inputs) if i not in consts]
    n_out = d.outputs if isinstance(d.outputs, int) else 1
    return ctx.emit(ctx.kind, ins, attrs, [ctx.out(i) for i in range(n_out)])


def register_same_ops() -> None:
    """A converter for every op declared onnx="same" that has no converter of its own."""
    for kind, d in sorted(OPS.items()):
        if d.onnx == "same" and kind not in CONVERTERS:
            CONVERTERS[kind] = Converter(_same)


@converter("Dropout", check=_extra_outputs_used(1, "mask"))
def _dropout(ctx):
    training = ctx.const(2, "training_mode")
    if training is not None and bool(np.asarray(training).reshape(-1)[0]):
        raise ctx.error("training_mode is true; only inference (identity) is supported")
    return ctx.emit("Dropout", [ctx.input(0, "data")], {}, [ctx.out(0)])


def _cast_check(node, attrs, opset, used):
    to = attrs.get("to")
    if to is not None and onnx_to_dtype(to) is None:
        return f"cast to {dtype_name(to)} is not supported"
    return None


@converter("Cast", check=_cast_check)
def _cast(ctx):
    return ctx.emit("Cast", [ctx.input(0, "data")], {"to": onnx_to_dtype(ctx.attr("to"))},
                    [ctx.out(0)])


@converter("CastLike")
def _cast_like(ctx):
    return ctx.emit("Cast", [ctx.input(0, "data")], {"to": ctx.input(1, "target").type.dtype},
                    [ctx.out(0)])


@converter("Clip")
def _clip(ctx):
    x = ctx.input(0, "data")
    attrs = {}
    if ctx.opset < 11:
        if "min" in ctx.attrs:
            attrs["min"] = float(ctx.attrs["min"])
        if "max" in ctx.attrs:
            attrs["max"] = float(ctx.attrs["max"])
    else:
        for i, key in ((1, "min"), (2, "max")):
            c = ctx.const(i, key)
            if c is not None:
                try:
                    attrs[key] = _scalar(c, x.type.dtype)
                except ValueError:
                    raise ctx.error(f"{key} must be a scalar, got shape {list(c.shape)}") from None
    return ctx.emit("Clip", [x], attrs, [ctx.out(0)])


# ---- convolution, pooling ----------------------------------------------------------------------
def _spatial_pads(ctx, in_sp, kernel, strides, dilations) -> list[int]:
    """Resolve auto_pad / pads for Conv and pooling to explicit begins-then-ends pads."""
    n = len(in_sp)
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(ctx.attr("pads", [0] * 2 * n))
        if len(pads) != 2 * n:
            raise ctx.error(f"pads {pads} must have {2 * n} entries")
        return [int(p) for p in pads]
    if auto == "VALID":
        return [0] * 2 * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad '{auto}'")
    begins, ends = [], []
    for i, s, k, d in zip(in_sp, strides, kernel, dilations):
        out = -(-i // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - i)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins + ends


def _window(ctx, n: int, kernel) -> tuple[list[int], list[int], list[int]]:
    kernel = [int(k) for k in kernel]
    strides = [int(s) for s in ctx.attr("strides", [1] * n)]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * n)]
    for what, v in (("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)):
        if len(v) != n:
            raise ctx.error(f"{what} {v} must have {n} entries (one per spatial axis)")
        if any(x <= 0 for x in v):
            raise ctx.error(f"{what} {v} must be positive")
    return kernel, strides, dilations


def _conv_operands(ctx):
    """Conv / ConvTranspose: X, W, B, the number of spatial axes and the checked window."""
    x, w, b = ctx.input(0, "X"), ctx.input(1, "W"), ctx.input(2)
    n = x.type.rank - 2
    if n < 1 or w.type.rank != x.type.rank:
        raise ctx.error(f"expects X and W of the same rank >= 3, got {x.type} and {w.type}")
    kernel, strides, dil = _window(ctx, n, ctx.attr("kernel_shape", w.type.shape[2:]))
    return x, w, b, n, kernel, strides, dil


@converter("Conv")
def _conv(ctx):
    x, w, b, _, kernel, strides, dil = _conv_operands(ctx)
    pads = _spatial_pads(ctx, x.type.shape[2:], kernel, strides, dil)
    return ctx.emit("Conv", [x, w, b], dict(kernel_shape=kernel, strides=strides, pads=pads,
                                              dilations=dil, group=int(ctx.attr("group", 1))),
                    [ctx.out(0)])


@converter("ConvTranspose")
def _conv_transpose(ctx):
    x, w, b, n, kernel, strides, dil = _conv_operands(ctx)
    out_pad = [int(p) for p in ctx.attr("output_padding", [0] * n)]
    if len(out_pad) != n:
        raise ctx.error(f"output_padding {out_pad} must have {n} entries")
    auto = ctx.attr("auto_pad", "NOTSET")
    out_shape = ctx.attr("output_shape")
    in_sp = x.type.shape[2:]
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [i * s for i, s in zip(in_sp, strides)]
        out_shape = list(out_shape)[-n:]
        begins, ends = [], []
        for k in range(n):
            total = strides[k] * (in_sp[k] - 1) + out_pad[k] + (kernel[k] - 1) * dil[k] + 1 \
                - out_shape[k]
            if total < 0:           # the requested size is reached with extra output padding
                out_pad[k] -= total
                total = 0
            # the ONNX split (as onnxruntime does it): an odd total puts the extra pixel at the
            # end for SAME_UPPER, at the beginning otherwise
            head = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begins.append(head)
            ends.append(total - head)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * 2 * n
    else:
        pads = [int(p) for p in ctx.attr("pads", [0] * 2 * n)]
        if len(pads) != 2 * n:
            raise ctx.error(f"pads {pads} must have {2 * n} entries")
    return ctx.emit("ConvTranspose", [x, w, b],
                    dict(kernel_shape=kernel, strides=strides, pads=pads, dilations=dil,
                         output_padding=out_pad, group=int(ctx.attr("group", 1))), [ctx.out(0)])


def _pool_check(node, attrs, opset, used):
    if len(node.output) > 1 and node.output[1] and node.output[1] in used:
        return "its Indices output is used; only the pooled values are supported"
    return None


@converter("MaxPool", "AveragePool", check=_pool_check)
def _pool(ctx):
    x = ctx.input(0, "X")
    n = x.type.rank - 2
    if n < 1:
        raise ctx.error(f"expects an input of rank >= 3, got {x.type}")
    if "kernel_shape" not in ctx.attrs:
        raise ctx.error("attribute kernel_shape is required")
    kernel, strides, dil = _window(ctx, n, ctx.attr("kernel_shape"))
    pads = _spatial_pads(ctx, x.type.shape[2:], kernel, strides, dil)
    attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, dilations=dil,
                 ceil_mode=int(ctx.attr("ceil_mode", 0)))
    if ctx.kind == "AveragePool":
        attrs["count_include_pad"] = int(ctx.attr("count_include_pad", 0))
    return ctx.emit(ctx.kind, [x], attrs, [ctx.out(0)])


def _bn_check(node, attrs, opset, used):
    if opset < 9 and attrs.get("spatial", 1) == 0:
        return "spatial=0 is not supported"
    if attrs.get("training_mode", 0):
        return None
    return _extra_outputs_used(1, "training statistics")(node, attrs, opset, used)


@converter("BatchNormalization", check=_bn_check)
def _batch_norm(ctx):
    ins = [ctx.input(i, what) for i, what in enumerate(["X", "scale", "B", "mean", "var"])]
    eps = float(ctx.attr("epsilon", 1e-5))
    if ctx.attr("training_mode", 0):
        return _batch_norm_training(ctx, *ins, eps)
    return ctx.emit("BatchNormalization", ins, {"epsilon": eps}, [ctx.out(0)])


def _batch_norm_training(ctx, x, scale, bias, mean_in, var_in, eps):
    """training_mode=1 (opset 14+): normalized with the batch's own statistics (population
    variance over every axis but C); the running mean / var outputs blend the inputs with
    them by `momentum`. Spelled out in ops the rest of the compiler knows."""
    if x.type.dtype != "f32":
        raise ctx.error("training_mode=1 is supported for f32 inputs only")
    rank, c = x.type.rank, x.type.shape[1]
    axes = [0] + list(range(2, rank))
    per_channel = {"shape": [c] + [1] * (rank - 2)}
    (mean,) = ctx.emit("ReduceMean", [x], {"axes": axes, "keepdims": 1}, suffix="/batch_mean")
    (d,) = ctx.emit("Sub", [x, mean], suffix="/centered")
    (d2,) = ctx.emit("Mul", [d, d], suffix="/squared")
    (var,) = ctx.emit("ReduceMean", [d2], {"axes": axes, "keepdims": 1}, suffix="/batch_var")
    (v_eps,) = ctx.emit("Add", [var, ctx.weight(np.float32(eps), "epsilon")], suffix="/var_eps")
    (std,) = ctx.emit("Sqrt", [v_eps], suffix="/std")
    (s,) = ctx.emit("Reshape", [scale], per_channel, suffix="/scale")
    (b,) = ctx.emit("Reshape", [bias], per_channel, suffix="/bias")
    (sd,) = ctx.emit("Mul", [d, s], suffix="/scaled")
    (n,) = ctx.emit("Div", [sd, std], suffix="/normalized")
    results = list(ctx.emit("Add", [n, b], {}, [ctx.out(0)]))
    momentum = float(ctx.attr("momentum", 0.9))
    for i, (batch, running, what) in enumerate([(mean, mean_in, "mean"), (var, var_in, "var")]):
        if not ctx.used(1 + i):
            continue
        (flat,) = ctx.emit("Reshape", [batch], {"shape": [c]}, suffix=f"/{what}_flat")
        (old,) = ctx.emit("Mul", [running, ctx.weight(np.float32(momentum), "momentum")],
                          suffix=f"/{what}_kept")
        (new,) = ctx.emit("Mul", [flat, ctx.weight(np.float32(1 - momentum), "1-momentum")],
                          suffix=f"/{what}_new")
        results += ctx.emit("Add", [old, new], {}, [ctx.out(1 + i)])
    return results


@converter("LayerNormalization")
def _layer_norm(ctx):
    x, scale, bias = ctx.input(0, "X"), ctx.input(1, "scale"), ctx.input(2)
    axis = _axis(ctx, ctx.attr("axis", -1), x.type.rank)
    eps = float(ctx.attr("epsilon", 1e-5))
    if not (ctx.used(1) or ctx.used(2)):
        return ctx.emit("LayerNormalization", [x, scale, bias], {"axis": axis, "epsilon": eps},
                        [ctx.out(0)])
    # Mean / InvStdDev are read: spell the op out so that both are values of the graph
    if x.type.dtype != "f32":
        raise ctx.error("Mean/InvStdDev outputs are supported for f32 inputs only")
    axes = list(range(axis, x.type.rank))
    (mean,) = ctx.emit("ReduceMean", [x], {"axes": axes, "keepdims": 1}, [ctx.out(1)], "/mean")
    (d,) = ctx.emit("Sub", [x, mean], suffix="/centered")
    (d2,) = ctx.emit("Mul", [d, d], suffix="/squared")
    (var,) = ctx.emit("ReduceMean", [d2], {"axes": axes, "keepdims": 1}, suffix="/var")
    (v_eps,) = ctx.emit("Add", [var, ctx.weight(np.float32(eps), "epsilon")], suffix="/var_eps")
    (std,) = ctx.emit("Sqrt", [v_eps], suffix="/std")
    (inv,) = ctx.emit("Reciprocal", [std], {}, [ctx.out(2)], "/inv_std")
    (n,) = ctx.emit("Mul", [d, inv], suffix="/normalized")
    if bias is None:
        (y,) = ctx.emit("Mul", [n, scale], {}, [ctx.out(0)])
    else:
        (y_s,) = ctx.emit("Mul", [n, scale], suffix="/scaled")
        (y,) = ctx.emit("Add", [y_s, bias], {}, [ctx.out(0)])
    return [y, mean, inv]


def _lstm_check(node, attrs, opset, used):
    if len(node.input) > 7 and node.input[7]:
        return "peephole weights (input P) are not supported"
    if "activation_alpha" in attrs or "activation_beta" in attrs:
        return "activation_alpha/activation_beta are not supported"
    return None


@converter("LSTM", check=_lstm_check)
def _lstm(ctx):
    ins = [ctx.input(i, what if i < 3 else None)
           for i, what in enumerate(["X", "W", "R", "B", "sequence_lens", "initial_h",
                                     "initial_c"])]
    r = ins[2].type.shape
    attrs = {"hidden_size": int(ctx.attr("hidden_size", r[-1])),
             "direction": ctx.attr("direction", "forward"),
             "clip": float(ctx.attr("clip", 0.0)),
             "input_forget": int(ctx.attr("input_forget", 0)),
             "layout": int(ctx.attr("layout", 0))}
    if "activations" in ctx.attrs:
        attrs["activations"] = list(ctx.attrs["activations"])
    elif attrs["direction"] == "bidirectional":
        attrs["activations"] = ["Sigmoid", "Tanh", "Tanh"] * 2
    return ctx.emit("LSTM", ins, attrs, [ctx.out(i) for i in range(3)])


# ---- reductions, softmax -----------------------------------------------------------------------
@converter(*sorted(k for k in kinds_with("reduction") if k.startswith("Reduce")))
def _reduce(ctx):
    x = ctx.input(0, "data")
    axes_as_input = ctx.opset >= 18 or (ctx.kind == "ReduceSum" and ctx.opset >= 13)
    axes = ctx.const(1, "axes") if axes_as_input else ctx.attr("axes")
    axes = None if axes is None else _ints(axes)
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return ctx.emit("Identity", [x], {}, [ctx.out(0)])
        axes = list(range(x.type.rank))
    return ctx.emit(ctx.kind, [x], {"axes": _axes(ctx, axes, x.type.rank),
                                    "keepdims": int(ctx.attr("keepdims", 1))}, [ctx.out(0)])


@converter("ArgMax", "ArgMin")
def _arg(ctx):
    x = ctx.input(0, "data")
    return ctx.emit(ctx.kind, [x], {"axis": _axis(ctx, ctx.attr("axis", 0), x.type.rank),
                                    "keepdims": int(ctx.attr("keepdims", 1)),
                                    "select_last_index": int(ctx.attr("select_last_index", 0))},
                    [ctx.out(0)])


@converter("Softmax", "LogSoftmax")
def _softmax(ctx):
    x = ctx.input(0, "input")
    rank, shape = x.type.rank, x.type.shape
    if ctx.opset >= 13:
        axis = _axis(ctx, ctx.attr("axis", -1), rank)
        return ctx.emit(ctx.kind, [x], {"axis": axis}, [ctx.out(0)])
    # opset < 13: the input is coerced to 2-D [prod(shape[:axis]), prod(shape[axis:])]
    axis = _axis(ctx, ctx.attr("axis", 1), rank) if rank else 0
    if axis == rank - 1:
        return ctx.emit(ctx.kind, [x], {"axis": axis}, [ctx.out(0)])
    flat = [math.prod(shape[:axis]), math.prod(shape[axis:])]
    (x2,) = ctx.emit("Reshape", [x], {"shape": flat}, suffix="/to2d")
    (y2,) = ctx.emit(ctx.kind, [x2], {"axis": 1})
    return ctx.emit("Reshape", [y2], {"shape": list(shape)}, [ctx.out(0)], suffix="/back")


# ---- data movement -----------------------------------------------------------------------------
def _reshape_target(ctx, in_shape, shape, allowzero) -> list[int]:
    out = []
    for k, d in enumerate(shape):
        if d == 0 and not allowzero:
            if k >= len(in_shape):
                raise ctx.error(f"shape {shape}: 0 at position {k} copies a dim the input "
                                f"{list(in_shape)} does not have")
            d = in_shape[k]
        out.append(d)
    numel = math.prod(in_shape)
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ctx.error(f"invalid shape {shape}")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or numel % known:
            raise ctx.error(f"cannot reshape {list(in_shape)} to {shape}")
        out[out.index(-1)] = numel // known
    if math.prod(out) != numel:
        raise ctx.error(f"cannot reshape {list(in_shape)} ({numel} elements) to {shape}")
    return out


@converter("Reshape")
def _reshape(ctx):
    x = ctx.input(0, "data")
    shape = ctx.const(1, "shape") if ctx.n_inputs > 1 else None
    if shape is None:   # never in opset >= 5; a missing operand is an error
        raise ctx.error("shape input is required")
    target = _reshape_target(ctx, x.type.shape, _ints(shape), int(ctx.attr("allowzero", 0)))
    return ctx.emit("Reshape", [x], {"shape": target}, [ctx.out(0)])


@converter("Flatten")
def _flatten(ctx):
    x = ctx.input(0, "input")
    axis = int(ctx.attr("axis", 1))
    if not -x.type.rank <= axis <= x.type.rank:
        raise ctx.error(f"axis {axis} is out of range for rank {x.type.rank}")
    return ctx.emit("Flatten", [x], {"axis": axis + x.type.rank if axis < 0 else axis},
                    [ctx.out(0)])


@converter("Transpose")
def _transpose(ctx):
    x = ctx.input(0, "data")
    perm = [int(p) for p in ctx.attr("perm", list(range(x.type.rank))[::-1])]
    if sorted(perm) != list(range(x.type.rank)):
        raise ctx.error(f"perm {perm} is not a permutation of the {x.type.rank} axes")
    return ctx.emit("Transpose", [x], {"perm": perm}, [ctx.out(0)])


def _axes_operand(ctx):
    if ctx.opset >= 13:
        a = ctx.const(1, "axes")
        return None if a is None else _ints(a)
    a = ctx.attr("axes")
    return None if a is None else [int(v) for v in a]


@converter("Squeeze")
def _squeeze(ctx):
    x = ctx.input(0, "data")
    axes = _axes_operand(ctx)
    if axes is None:
        axes = [k for k, d in enumerate(x.type.shape) if d == 1]
    axes = _axes(ctx, axes, x.type.rank)
    bad = [a for a in axes if x.type.shape[a] != 1]
    if bad:
        raise ctx.error(f"cannot squeeze axes {bad} of {x.type}: their size is not 1")
    return ctx.emit("Squeeze", [x], {"axes": axes}, [ctx.out(0)])


@converter("Unsqueeze")
def _unsqueeze(ctx):
    x = ctx.input(0, "data")
    axes = _axes_operand(ctx)
    if axes is None:
        raise ctx.error("axes are required")
    return ctx.emit("Unsqueeze", [x], {"axes": _axes(ctx, axes, x.type.rank + len(axes))},
                    [ctx.out(0)])


@converter("Expand")
def _expand(ctx):
    x = ctx.input(0, "input")
    shape = _ints(ctx.const(1, "shape"))
    try:
        final = list(np.broadcast_shapes(x.type.shape, tuple(shape)))
    except ValueError:
        raise ctx.error(f"cannot expand {x.type} to {shape}") from None
    return ctx.emit("Expand", [x], {"shape": final}, [ctx.out(0)])


@converter("Concat")
def _concat(ctx):
    ins = [v for v in ctx.inputs() if v is not None]
    if not ins:
        raise ctx.error("needs at least one input")
    if "axis" not in ctx.attrs:
        raise ctx.error("attribute axis is required")
    axis = _axis(ctx, ctx.attrs["axis"], ins[0].type.rank)
    return ctx.emit("Concat", ins, {"axis": axis}, [ctx.out(0)])


@converter("Split")
def _split(ctx):
    x = ctx.input(0, "input")
    axis = _axis(ctx, ctx.attr("axis", 0), x.type.rank)
    dim = x.type.shape[axis]
    split = ctx.const(1, "split") if ctx.opset >= 13 else ctx.attr("split")
    split = None if split is None or len(split) == 0 else _ints(split)
    n_out = len(ctx.node.output)
    if split is None:
        num = int(ctx.attr("num_outputs", n_out))
        if "num_outputs" in ctx.attrs:          # opset 18: the last chunk may be smaller
            size = -(-dim // num)
            split = [size] * (num - 1) + [dim - size * (num - 1)]
        elif dim % num:
            raise ctx.error(f"cannot split axis {axis} of size {dim} into {num} equal parts")
        else:
            split = [dim // num] * num
    if sum(split) != dim or any(s < 0 for s in split):
        raise ctx.error(f"split sizes {split} do not add up to {dim} (axis {axis} of {x.type})")
    return ctx.emit("Split", [x], {"axis": axis, "split": split},
                    [ctx.out(i) for i in range(len(split))])


@converter("Slice")
def _slice(ctx):
    x = ctx.input(0, "data")
    shape = x.type.shape
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes, steps = ctx.attr("axes"), None
        if starts is None or ends is None:
            raise ctx.error("attributes starts and ends are required")
    else:
        starts, ends = ctx.const(1, "starts"), ctx.const(2, "ends")
        axes, steps = ctx.const(3, "axes"), ctx.const(4, "steps")
        if starts is None or ends is None:
            raise ctx.error("inputs starts and ends are required")
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts/ends/axes/steps have different lengths "
                        f"({len(starts)}, {len(ends)}, {len(axes)}, {len(steps)})")
    axes_n = [_axis(ctx, a, x.type.rank) for a in axes]
    if len(set(axes_n)) != len(axes_n):
        raise ctx.error(f"axes {axes} has duplicates")
    out_starts, out_ends = [], []
    for a, s, e, st in zip(axes_n, starts, ends, steps):
        if st == 0:
            raise ctx.error("steps must not be 0")
        s2, e2, _ = slice(s, e, st).indices(shape[a])   # numpy clamping; e2 == -1 past 0
        out_starts.append(s2)
        out_ends.append(e2)
    return ctx.emit("Slice", [x], dict(starts=out_starts, ends=out_ends, axes=axes_n,
                                       steps=steps), [ctx.out(0)])


@converter("Gather", "GatherElements")
def _gather(ctx):
    x = ctx.input(0, "data")
    return ctx.emit(ctx.kind, [x, ctx.input(1, "indices")],
                    {"axis": _axis(ctx, ctx.attr("axis", 0), x.type.rank)}, [ctx.out(0)])


@converter("Tile")
def _tile(ctx):
    x = ctx.input(0, "input")
    reps = ctx.const(1, "repeats")
    if reps is None:
        raise ctx.error("repeats input is required")
    return ctx.emit("Tile", [x], {"repeats": _ints(reps)}, [ctx.out(0)])


@converter("Pad")
def _pad(ctx):
    x = ctx.input(0, "data")
    rank = x.type.rank
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads, value = [int(p) for p in ctx.attr("pads", [])], float(ctx.attr("value", 0.0))
    else:
        p = ctx.const(1, "pads")
        if p is None:
            raise ctx.error("pads input is required")
        pads = _ints(p)
        v = ctx.const(2, "constant_value")
        value = 0.0 if v is None or v.size == 0 else float(np.asarray(v).reshape(-1)[0])
        axes = ctx.const(3, "axes")
        if axes is not None:
            axes = [_axis(ctx, a, rank) for a in _ints(axes)]
            if len(pads) != 2 * len(axes):
                raise ctx.error(f"pads {pads} must have 2x{len(axes)} entries")
            full = [0] * 2 * rank
            for k, a in enumerate(axes):
                full[a], full[a + rank] = pads[k], pads[k + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        raise ctx.error(f"pads {pads} must have {2 * rank} entries for {x.type}")
    return ctx.emit("Pad", [x], {"pads": pads, "mode": mode, "value": value}, [ctx.out(0)])


def _resize_check(node, attrs, opset, used):
    if attrs.get("keep_aspect_ratio_policy", "stretch") not in ("stretch", "not_larger",
                                                                "not_smaller"):
        return f"keep_aspect_ratio_policy '{attrs['keep_aspect_ratio_policy']}' is unknown"
    if attrs.get("mode", "nearest") not in ("nearest", "linear", "bilinear", "cubic"):
        return f"mode '{attrs.get('mode')}' is not supported"
    return None


def _emit_resize(ctx, x, scales, sizes, attrs):
    shape = x.type.shape
    if sizes is not None:
        scales = [o / i for o, i in zip(sizes, shape)]
    else:
        sizes = [int(math.floor(i * s)) for i, s in zip(shape, scales)]
    if len(sizes) != len(shape) or any(s <= 0 for s in sizes):
        raise ctx.error(f"cannot resize {x.type} to {sizes}")
    attrs.update(sizes=sizes, scales=scales)
    return ctx.emit("Resize", [x], attrs, [ctx.out(0)])


def _resize_keep_aspect(ctx, x, sizes, axes, policy, attrs):
    """opset 18 keep_aspect_ratio_policy: one scale for all resized axes, the largest that
    fits in `sizes` (not_larger) or the smallest that covers it (not_smaller); computed in
    float32 and rounded half away from zero, as onnxruntime does."""
    shape = x.type.shape
    axes = list(range(x.type.rank)) if axes is None else [_axis(ctx, a, x.type.rank)
                                                          for a in axes]
    if len(axes) != len(sizes):
        raise ctx.error(f"sizes {sizes} must have one entry per axis {axes}")
    if any(shape[a] == 0 for a in axes):
        raise ctx.error(f"cannot keep the aspect ratio of {x.type}: an axis to resize is empty")
    ratios = [np.float32(s) / np.float32(shape[a]) for s, a in zip(sizes, axes)]
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    out, scales = list(shape), [1.0] * len(shape)
    for a in axes:
        out[a] = int(np.floor(np.float32(scale) * np.float32(shape[a]) + np.float32(0.5)))
        scales[a] = float(scale)
    if any(s <= 0 for s in out):
        raise ctx.error(f"cannot resize {x.type} to {out}")
    attrs.update(sizes=out, scales=scales)
    return ctx.emit("Resize", [x], attrs, [ctx.out(0)])


def _per_axis(ctx, values, axes, rank, fill):
    if axes is None:
        if len(values) != rank:
            raise ctx.error(f"{values} must have {rank} entries")
        return values
    full = [fill[k] for k in range(rank)]
    _axes(ctx, axes, rank)  # range and duplicate checks; values pair with axes as given
    for a, v in zip(axes, values):
        full[_axis(ctx, a, rank)] = v
    return full


@converter("Resize", "Upsample", check=_resize_check)
def _resize(ctx):
    x = ctx.input(0, "X")
    rank, shape = x.type.rank, x.type.shape
    mode = ctx.attr("mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode
    if ctx.kind == "Upsample" or ctx.opset < 11:      # the old asymmetric/floor semantics
        if ctx.kind == "Upsample" and ctx.opset < 9:
            scales = ctx.attr("scales")
        else:
            scales = ctx.const(1, "scales")
        if scales is None:
            raise ctx.error("scales are required")
        return _emit_resize(ctx, x, _floats(scales), None, {
            "mode": mode, "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor"})
    scales, sizes = ctx.const(2, "scales"), ctx.const(3, "sizes")
    axes = ctx.attr("axes")
    attrs = {"mode": mode}
    for k in ("coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a",
              "exclude_outside", "extrapolation_value", "antialias"):
        if k in ctx.attrs:
            attrs[k] = ctx.attrs[k]
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        roi = ctx.const(1, "roi")
        if roi is None or not roi.size:
            raise ctx.error("tf_crop_and_resize needs the roi input (a constant)")
        roi = _floats(roi)
        n = len(roi) // 2
        if axes is not None:        # opset 18: one (start, end) per listed axis
            roi = _per_axis(ctx, roi[:n], axes, rank, [0.0] * rank) + \
                _per_axis(ctx, roi[n:], axes, rank, [1.0] * rank)
        attrs["roi"] = roi
    if sizes is not None and sizes.size:
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            return _resize_keep_aspect(ctx, x, _ints(sizes), axes, policy, attrs)
        sizes = _per_axis(ctx, _ints(sizes), axes, rank, shape)
        return _emit_resize(ctx, x, None, sizes, attrs)
    if scales is not None and scales.size:
        scales = _per_axis(ctx, _floats(scales), axes, rank, [1.0] * rank)
        return _emit_resize(ctx, x, scales, None, attrs)
    raise ctx.error("one of scales or sizes must be given")


# ---- computed directly (never in the IR) ---------------------------------------------------------
@converter("Shape")
def _shape(ctx):
    shape = np.array(ctx.shape(0), dtype=np.int64)
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return [ctx.constant(shape[start:end])]


@converter("Size")
def _size(ctx):
    return [ctx.constant(np.array(math.prod(ctx.shape(0)), dtype=np.int64))]


def _constant_check(node, attrs, opset, used):
    if "sparse_value" in attrs or "value_string" in attrs or "value_strings" in attrs:
        return "sparse or string constants are not supported"
    return None


@converter("Constant", check=_constant_check)
def _constant(ctx):
    a = ctx.attrs
    if "value" in a:
        arr = tensor_to_array(a["value"], ctx.where())
    elif "value_float" in a:
        arr = np.array(a["value_float"], dtype=np.float32)
    elif "value_floats" in a:
        arr = np.array(a["value_floats"], dtype=np.float32)
    elif "value_int" in a:
        arr = np.array(a["value_int"], dtype=np.int64)
    elif "value_ints" in a:
        arr = np.array(a["value_ints"], dtype=np.int64)
    else:
        raise ctx.error("has no value attribute")
    return [ctx.constant(arr)]


@converter("ConstantOfShape")
def _constant_of_shape(ctx):
    shape = _ints(ctx.const(0, "shape"))
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ctx.error(f"shape {shape} is negative or larger than 2^31 elements")
    value = ctx.attr("value")
    fill = np.zeros(1, np.float32) if value is None else tensor_to_array(value, ctx.where())
    if fill.size != 1:
        raise ctx.error(f"value must hold one element, got {fill.size}")
    return [ctx.constant(np.full(shape, fill.reshape(-1)[0], dtype=fill.dtype))]


@converter("Range")
def _range(ctx):
    start, limit, delta = (ctx.const(i, w) for i, w in enumerate(["start", "limit", "delta"]))
    if any(v is None for v in (start, limit, delta)):
        raise ctx.error("start, limit and delta are required")
    s, l, d = (v.reshape(-1)[0] for v in (start, limit, delta))
    if d == 0:
        raise ctx.error("delta must not be 0")
    n = max(int(math.ceil((l - s) / d)), 0)
    if n > MAX_ELEMENTS:
        raise ctx.error(f"would produce {n} elements")
    return [ctx.constant((s + np.arange(n) * d).astype(start.dtype))]


register_same_ops()
