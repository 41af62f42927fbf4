"""LSTM (ONNX semantics: gates i, o, f, c; optional peepholes, clip, input_forget,
sequence_lens, layout, forward/reverse/bidirectional). Float64 state and gate math."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .registry import contiguous, kernel

# activation name → (code, default alpha, default beta)
_ACTIVATIONS = {"Sigmoid": (0, 0.0, 0.0), "Tanh": (1, 0.0, 0.0), "Relu": (2, 0.0, 0.0),
                "HardSigmoid": (3, 0.2, 0.5), "LeakyRelu": (4, 0.01, 0.0),
                "Affine": (5, 1.0, 0.0), "ScaledTanh": (6, 1.0, 1.0),
                "ThresholdedRelu": (7, 1.0, 0.0), "Elu": (8, 1.0, 0.0),
                "Softsign": (9, 0.0, 0.0), "Softplus": (10, 0.0, 0.0)}


@njit(cache=True)
def _act(code, v, alpha, beta):
    if code == 0:
        return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    if code == 1:
        return math.tanh(v)
    if code == 2:
        return max(v, 0.0)
    if code == 3:
        return min(max(alpha * v + beta, 0.0), 1.0)
    if code == 4:
        return v if v >= 0 else alpha * v
    if code == 5:
        return alpha * v + beta
    if code == 6:
        return alpha * math.tanh(beta * v)
    if code == 7:
        return v if v > alpha else 0.0
    if code == 8:
        return v if v >= 0 else alpha * (math.exp(v) - 1.0)
    if code == 9:
        return v / (1.0 + abs(v))
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(cache=True)
def _lstm_direction(X, W, R, B, P, h0, c0, lens, reverse, acts, alphas, betas, clip,
                    input_forget, Y, Yh, Yc):
    # X [T,N,I] W [4H,I] R [4H,H] B [8H] P [3H] h0/c0 [N,H] lens [N]; Y [T,N,H] zeroed
    T, N, I = X.shape
    H = R.shape[1]
    gates = np.empty(4 * H, np.float64)
    h = np.empty(H, np.float64)
    c = np.empty(H, np.float64)
    for n in range(N):
        for j in range(H):
            h[j] = h0[n, j]
            c[j] = c0[n, j]
        L = min(lens[n], T)
        for step in range(L):
            t = L - 1 - step if reverse else step
            for r in range(4 * H):
                acc = np.float64(B[r]) + np.float64(B[4 * H + r])
                for k in range(I):
                    acc += np.float64(W[r, k]) * np.float64(X[t, n, k])
                for k in range(H):
                    acc += np.float64(R[r, k]) * h[k]
                if clip > 0.0:
                    acc = min(max(acc, -clip), clip)
                gates[r] = acc
            for j in range(H):  # gate blocks: i, o, f, c
                gi = _act(acts[0], gates[j] + P[j] * c[j], alphas[0], betas[0])
                if input_forget:
                    gf = 1.0 - gi
                else:
                    gf = _act(acts[0], gates[2 * H + j] + P[2 * H + j] * c[j],
                              alphas[0], betas[0])
                gc = _act(acts[1], gates[3 * H + j], alphas[1], betas[1])
                c[j] = gf * c[j] + gi * gc
                go = _act(acts[0], gates[H + j] + P[H + j] * c[j], alphas[0], betas[0])
                h[j] = go * _act(acts[2], c[j], alphas[2], betas[2])
                Y[t, n, j] = h[j]
        for j in range(H):
            Yh[n, j] = h[j]
            Yc[n, j] = c[j]


def _activation_params(a: dict, dirs: int):
    names = list(a["activations"])
    if len(names) == 3 and dirs == 2:
        names = names * 2
    if len(names) != 3 * dirs:
        raise ValueError(f"expected {3 * dirs} activations, got {names}")
    alphas, betas = list(a.get("activation_alpha") or []), list(a.get("activation_beta") or [])
    codes, al, be = [], [], []
    for i, name in enumerate(names):
        if name not in _ACTIVATIONS:
            raise ValueError(f"unsupported LSTM activation '{name}'")
        code, da, db = _ACTIVATIONS[name]
        codes.append(code)
        al.append(alphas[i] if i < len(alphas) else da)
        be.append(betas[i] if i < len(betas) else db)
    return (np.array(codes, np.int64).reshape(dirs, 3), np.array(al).reshape(dirs, 3),
            np.array(be).reshape(dirs, 3))


@kernel("LSTM")
def lstm(op, ins):
    ins = ins + [None] * (8 - len(ins))
    X, W, R, B, lens, h0, c0, P = ins[:8]
    a = op.attrs
    dirs, hidden = W.shape[0], int(a["hidden_size"])
    direction = a["direction"]
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"unknown direction '{direction}'")
    if dirs != (2 if direction == "bidirectional" else 1):
        raise ValueError(f"direction '{direction}' but W holds {dirs} direction(s)")
    if a["layout"]:
        X = np.swapaxes(X, 0, 1)
        h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
        c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
    T, N = X.shape[:2]
    f64 = np.float64
    B = np.zeros((dirs, 8 * hidden), f64) if B is None else B.astype(f64)
    P = np.zeros((dirs, 3 * hidden), f64) if P is None else P.astype(f64)
    h0 = np.zeros((dirs, N, hidden), f64) if h0 is None else h0.astype(f64)
    c0 = np.zeros((dirs, N, hidden), f64) if c0 is None else c0.astype(f64)
    lens = np.full(N, T, np.int64) if lens is None else lens.astype(np.int64)
    codes, alphas, betas = _activation_params(a, dirs)
    Xc = contiguous(X, f64)
    Y = np.zeros((T, dirs, N, hidden), f64)
    Yh = np.zeros((dirs, N, hidden), f64)
    Yc = np.zeros((dirs, N, hidden), f64)
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        _lstm_direction(Xc, contiguous(W[d], f64), contiguous(R[d], f64),
                        B[d], P[d], contiguous(h0[d]), contiguous(c0[d]),
                        lens, reverse, codes[d], alphas[d], betas[d], float(a["clip"]),
                        bool(a["input_forget"]), Y[:, d], Yh[d], Yc[d])
    if a["layout"]:
        Y, Yh, Yc = Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    dt = X.dtype
    return [contiguous(Y, dt), contiguous(Yh, dt),
            contiguous(Yc, dt)]
