"""Recurrent ops: LSTM (ONNX semantics, gate order i, o, f, c; no peepholes)."""
from __future__ import annotations

from ..ir import TensorType
from ..opdef import OpRuleError, opdef
from .canonical import fill
from ._util import (attr_choice, attr_float, attr_int, need_float, need_dtype, need_rank,
                    need_shape, operand, same_dtype)

# activations usable without activation_alpha/beta (parametrised ones use ONNX's defaults)
LSTM_ACTIVATIONS = ("Sigmoid", "Tanh", "Relu", "HardSigmoid", "LeakyRelu", "Elu", "Softsign",
                    "Softplus", "ThresholdedRelu")


def lstm_dims(op):
    """(seq_len, batch, input_size, num_directions, hidden_size) of a well-formed LSTM op."""
    x = operand(op, 0)
    seq, batch = x.shape[:2] if op.attrs["layout"] == 0 else x.shape[1::-1]
    nd = 2 if op.attrs["direction"] == "bidirectional" else 1
    return seq, batch, x.shape[2], nd, op.attrs["hidden_size"]


def _canon_lstm(a, types, n):
    r = types[2] if len(types) > 2 else None
    if r is not None and r.rank == 3:
        fill(a, "hidden_size", r.shape[2])
    nd = 2 if a.get("direction") == "bidirectional" else 1
    fill(a, "activations", ["Sigmoid", "Tanh", "Tanh"] * nd)


def _lstm_flops(op) -> int:
    seq, batch, inp, nd, h = lstm_dims(op)
    return 2 * seq * batch * nd * 4 * h * (inp + h)


@opdef("LSTM", ["X", "W", "R", "B?", "sequence_lens?", "initial_h?", "initial_c?"],
       {"hidden_size": None, "direction": "forward", "activations": None, "clip": 0.0,
        "input_forget": 0, "layout": 0}, outputs=3, canonicalize=_canon_lstm, flops=_lstm_flops)
def _lstm(op):
    """LSTM -> Y, Y_h, Y_c. layout=0: X[seq,batch,in], Y[seq,dirs,batch,H], Y_h[dirs,batch,H];
    layout=1: X[batch,seq,in], Y[batch,seq,dirs,H], Y_h[batch,dirs,H]."""
    x, w, r, b, lens, h0, c0 = (operand(op, i) for i in range(7))
    need_float("LSTM", "X", x)
    same_dtype("LSTM", [x, w, r] + [t for t in (b, h0, c0) if t],
               ["X", "W", "R"] + [n for n, t in (("B", b), ("initial_h", h0),
                                                 ("initial_c", c0)) if t])
    need_rank("LSTM", "X", x, 3)
    hidden = attr_int(op, "hidden_size", 1)
    direction = attr_choice(op, "direction", ("forward", "reverse", "bidirectional"))
    layout = attr_int(op, "layout", 0, 1)
    attr_int(op, "input_forget", 0, 1)
    if attr_float(op, "clip") < 0:
        raise OpRuleError(f"LSTM: clip={op.attrs['clip']} must be >= 0 (0 = no clipping)")
    nd = 2 if direction == "bidirectional" else 1
    acts = op.attrs.get("activations")
    if not isinstance(acts, (list, tuple)) or len(acts) != 3 * nd:
        raise OpRuleError(f"LSTM: activations={acts} must list {3 * nd} functions "
                          f"(f, g, h per direction) for direction={direction!r}")
    for a in acts:
        if a not in LSTM_ACTIVATIONS:
            raise OpRuleError(f"LSTM: activation {a!r} is not supported; "
                              f"one of {list(LSTM_ACTIVATIONS)}")
    seq, batch, inp, nd, h = lstm_dims(op)
    need_shape("LSTM", f"W (hidden_size={hidden}, input size {inp})", w, [nd, 4 * h, inp])
    need_shape("LSTM", f"R (hidden_size={hidden})", r, [nd, 4 * h, h])
    if b is not None:
        need_shape("LSTM", f"B (hidden_size={hidden})", b, [nd, 8 * h])
    if lens is not None:
        need_dtype("LSTM", "sequence_lens", lens, ("i32",), "i32")
        need_shape("LSTM", "sequence_lens", lens, [batch])
    state = (nd, batch, h) if layout == 0 else (batch, nd, h)
    for name, t in (("initial_h", h0), ("initial_c", c0)):
        if t is not None:
            need_shape("LSTM", f"{name} (layout={layout})", t, state)
    y = (seq, nd, batch, h) if layout == 0 else (batch, seq, nd, h)
    return [TensorType(x.dtype, y), TensorType(x.dtype, state), TensorType(x.dtype, state)]
