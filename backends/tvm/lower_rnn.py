"""TE lowering of LSTM (ONNX semantics: gates i, o, f, c; clip, input_forget, sequence_lens,
layout, forward/reverse/bidirectional), unrolled over the (static) sequence length.

Per direction: the input projection of all steps is one GEMM (`lstm_xproj`); each step then
does the recurrent product (`lstm_hproj<s>`) and the state update (`lstm_c<s>`, `lstm_h<s>`,
materialized: the LSTM schedule rule must not inline them). With sequence_lens, batch n only
advances while s < len[n] (its state is held afterwards, Y is 0 there), and the reverse
direction reads time L-1-s, like the reference kernel."""
from __future__ import annotations

from tvm import te, tirx

from edgecc.errors import ModelError

from edgecc.backends.tvm import vector_math
from edgecc.backends.tvm.te_rules import const, lowering

_F = "float32"


def _activation(name, op):
    one, zero = const(1.0, _F), const(0.0, _F)
    table = {
        "Sigmoid": lambda v: one / (one + vector_math.exp(-v)),
        "Tanh": vector_math.tanh,
        "Relu": lambda v: tirx.max(v, zero),
        "HardSigmoid": lambda v: tirx.min(tirx.max(const(0.2, _F) * v + const(0.5, _F), zero),
                                          one),
        "LeakyRelu": lambda v: tirx.Select(v >= zero, v, const(0.01, _F) * v),
        "Affine": lambda v: v,
        "ScaledTanh": vector_math.tanh,
        "ThresholdedRelu": lambda v: tirx.Select(v > one, v, zero),
        "Elu": lambda v: tirx.Select(v >= zero, v, vector_math.exp(v) - one),
        "Softsign": lambda v: v / (one + tirx.abs(v)),
        "Softplus": lambda v: tirx.max(v, zero) + tirx.log1p(vector_math.exp(-tirx.abs(v))),
    }
    if name not in table:
        raise ModelError(f"{op.describe()}: LSTM activation '{name}' is not supported by the "
                         f"TVM backend")
    return table[name]


@lowering("LSTM")
def _lstm(op, ins, target):
    ins = list(ins) + [None] * (7 - len(ins))
    x, w, r, b, lens, h0, c0 = ins[:7]
    if str(x.dtype) != _F:
        raise ModelError(f"{op.describe()}: the TVM LSTM lowering supports f32 only")
    a = op.attrs
    layout = int(a["layout"])
    dirs, hid = int(w.shape[0]), int(a["hidden_size"])
    if layout:
        batch, seq, nin = (int(d) for d in x.shape)
    else:
        seq, batch, nin = (int(d) for d in x.shape)
    names = list(a["activations"] or ["Sigmoid", "Tanh", "Tanh"])
    if len(names) == 3 and dirs == 2:
        names = names * 2
    clip = float(a["clip"])
    input_forget = int(a["input_forget"])
    reverse_dirs = {"forward": [False], "reverse": [True],
                    "bidirectional": [False, True]}[a["direction"]]

    def X(t, n, k):
        return x[n, t, k] if layout else x[t, n, k]

    def seq_len(n):
        return lens[n].astype("int32") if lens is not None else const(seq, "int32")

    results = []        # per direction: (list of h_s, list of c_s)
    for d, reverse in enumerate(reverse_dirs):
        f_act, g_act, h_act = (_activation(nm, op) for nm in names[3 * d:3 * d + 3])
        xp = te.compute((seq, batch, 4 * hid), _xproj(X, w, d, nin), name=f"lstm_xproj{d}")
        hs, cs = [], []
        for s in range(seq):
            def t_of(n, s=s, reverse=reverse):
                if not reverse:
                    return const(s, "int32")
                return tirx.max(seq_len(n) - 1 - s, 0)

            if s == 0:
                h_prev = (lambda n, j, d=d: h0[d, n, j] if not layout else h0[n, d, j]) \
                    if h0 is not None else (lambda n, j: const(0.0, _F))
                c_prev = (lambda n, j, d=d: c0[d, n, j] if not layout else c0[n, d, j]) \
                    if c0 is not None else (lambda n, j: const(0.0, _F))
            else:
                h_prev = (lambda n, j, t=hs[-1]: t[n, j])
                c_prev = (lambda n, j, t=cs[-1]: t[n, j])
            hp = te.compute((batch, 4 * hid), _hproj(h_prev, r, d, hid),
                            name=f"lstm_hproj{d}_{s}")

            def pre(n, j, d=d, hp=hp, xp=xp, t_of=t_of):
                v = xp[t_of(n), n, j] + hp[n, j]
                if b is not None:
                    v = v + b[d, j] + b[d, 4 * hid + j]
                if clip > 0:
                    v = tirx.max(tirx.min(v, const(clip, _F)), const(-clip, _F))
                return v

            def gates(n, j, pre=pre):
                gi = f_act(pre(n, j))
                # (gi's expression built again: one let-bound expression may appear once)
                gf = const(1.0, _F) - f_act(pre(n, j)) if input_forget else \
                    f_act(pre(n, 2 * hid + j))
                gc = g_act(pre(n, 3 * hid + j))
                go = f_act(pre(n, hid + j))
                return gi, gf, gc, go

            def valid(n, s=s):
                return s < seq_len(n)

            c_s = te.compute((batch, hid), _c_new(gates, c_prev, valid), name=f"lstm_c{d}_{s}")
            hs.append(te.compute((batch, hid), _h_new(gates, h_prev, valid, c_s, h_act),
                                 name=f"lstm_h{d}_{s}"))
            cs.append(c_s)
        results.append((hs, cs, reverse))

    def y_at(d, t, n, j):
        hs, _, reverse = results[d]
        # which step wrote time t: s = t (forward) or L-1-t (reverse); 0 where t >= L
        s_expr = (seq_len(n) - 1 - t) if reverse else t
        v = const(0.0, _F)
        for s in range(seq - 1, -1, -1):
            v = tirx.Select(s_expr == s, hs[s][n, j], v)
        return tirx.Select(t < seq_len(n), v, const(0.0, _F))

    def pick(d, n, j, which):
        v = results[-1][which][-1][n, j]
        for dd in range(dirs - 2, -1, -1):
            v = tirx.Select(d == dd, results[dd][which][-1][n, j], v)
        return v

    def pick_y(t, d, n, j):
        v = y_at(dirs - 1, t, n, j)
        for dd in range(dirs - 2, -1, -1):
            v = tirx.Select(d == dd, y_at(dd, t, n, j), v)
        return v

    if layout:
        y = te.compute((batch, seq, dirs, hid), lambda n, t, d, j: pick_y(t, d, n, j),
                       name="lstm_y")
        yh = te.compute((batch, dirs, hid), lambda n, d, j: pick(d, n, j, 0), name="lstm_yh")
        yc = te.compute((batch, dirs, hid), lambda n, d, j: pick(d, n, j, 1), name="lstm_yc")
    else:
        y = te.compute((seq, dirs, batch, hid), lambda t, d, n, j: pick_y(t, d, n, j),
                       name="lstm_y")
        yh = te.compute((dirs, batch, hid), lambda d, n, j: pick(d, n, j, 0), name="lstm_yh")
        yc = te.compute((dirs, batch, hid), lambda d, n, j: pick(d, n, j, 1), name="lstm_yc")
    return [y, yh, yc]


# fcompute callables must take exactly the index arguments (no defaults): build closures.

def _xproj(X, w, d, nin):
    kx = te.reduce_axis((0, nin), name="kx")
    return lambda t, n, j: te.sum(X(t, n, kx) * w[d, j, kx], axis=kx)


def _hproj(h_prev, r, d, hid):
    kh = te.reduce_axis((0, hid), name="kh")
    return lambda n, j: te.sum(h_prev(n, kh) * r[d, j, kh], axis=kh)


def _c_new(gates, c_prev, valid):
    def body(n, j):
        gi, gf, gc, _ = gates(n, j)
        return tirx.Select(valid(n), gf * c_prev(n, j) + gi * gc, c_prev(n, j))
    return body


def _h_new(gates, h_prev, valid, c_s, h_act):
    def body(n, j):
        return tirx.Select(valid(n), gates(n, j)[3] * h_act(c_s[n, j]), h_prev(n, j))
    return body
