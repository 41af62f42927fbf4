"""The linear algebra of the decompose pass: low-rank factors of a layer's weights.

A layer y = W x + b (Conv with W[M, C, *k], group 1; Gemm / MatMul with a constant [K, N]
matrix, seen as W[N, K]) is replaced by
  - svd:     y = U (V x) + b            V[r, C(*k)], U[M, r]    (1x1 convs, Gemm, MatMul)
  - tucker2: y = U conv_k(R x) + b      R[r_in, C] 1x1, core[r_out, r_in, *k], U[M, r_out]
             (KxK convs; the core keeps strides, pads and dilations; the 1x1 reduce has no
             bias, so zero padding still reads zeros)

Data-free factors come from the weights alone (truncated SVD / sequentially truncated HOSVD,
orthonormal: a full-rank decomposition reproduces W exactly). Data-aware factors fit the
layer's real output on calibration activations:
  - the input reduction R minimises E||W (x - M x)||^2 over rank-r_in maps M, with the input's
    second moment S = E[x x^T] and the weights' Gram G = sum_k W_k^T W_k:
    svd(G^1/2 S^1/2) = P D Q^T, R = Q_r^T S^-1/2 (the reduced channels come out whitened,
    which also suits a later int8 pass);
  - the core is the least-squares conv from the reduced patches to the true output;
  - the output basis U is the top eigenvectors of the predicted output's second moment (for
    a given predictor the best rank-r_out projection of it).
`refit_last` re-solves the last factor (U and the bias) by least squares against the
original layer's output with the decomposed network's own inputs (Zhang et al. 2015's
asymmetric reconstruction: errors of earlier layers are compensated, not piled up).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 1e-7        # relative Tikhonov term of the least-squares fits (conditioning only)


@dataclass
class Factors:
    method: str                      # "svd" | "tucker2"
    ranks: tuple[int, ...]           # (r,) | (r_in, r_out)
    first: np.ndarray                # svd: V[r, C, *k]; tucker2: R[r_in, C, 1...]
    core: np.ndarray | None          # tucker2: [r_out, r_in, *k]
    last: np.ndarray                 # U[M, r] (1x1)
    bias: np.ndarray | None          # [M] (None: the layer had none and needs none)

    def effective(self) -> np.ndarray:
        """The single weight W_eff[M, C, *k] the factors compute (same shape as W)."""
        if self.method == "svd":
            r = self.first.shape[0]
            return (self.last @ self.first.reshape(r, -1)).reshape(
                (self.last.shape[0],) + self.first.shape[1:])
        r_in, c = self.first.shape[:2]
        core = np.einsum("oi...,ic->oc...", self.core, self.first.reshape(r_in, c))
        return np.einsum("mo,oc...->mc...", self.last, core)


def _sym_power(a: np.ndarray, p: float, floor: float = 0.0) -> np.ndarray:
    """a^p of a symmetric PSD matrix (eigenvalues below `floor` raised to it)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    vals = np.maximum(vals, floor)
    return (vecs * vals ** p) @ vecs.T


def _top_eigvecs(a: np.ndarray, r: int) -> np.ndarray:
    """Columns: the r eigenvectors of symmetric `a` with the largest eigenvalues, each with
    a deterministic sign (largest component positive)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    top = vecs[:, np.argsort(-vals, kind="stable")[:r]]
    sign = np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    return top * np.where(sign == 0, 1.0, sign)


def _lstsq(f: np.ndarray, y: np.ndarray, prior: np.ndarray | None = None,
           shrink: float = 0.0) -> np.ndarray:
    """argmin_B ||f B - y||^2 + lam ||B - prior||^2 in float64; lam is a tiny ridge for
    conditioning, or pulls towards `prior` with weight shrink/(1-shrink) of f's mean energy
    when the rows are few for the unknowns."""
    gram = f.T @ f
    scale = max(np.trace(gram) / max(gram.shape[0], 1), 1e-30)
    lam = scale * max(RIDGE, shrink / max(1.0 - shrink, 1e-9))
    if prior is None:
        return np.linalg.solve(gram + lam * np.eye(gram.shape[0]), f.T @ y)
    return prior + np.linalg.solve(gram + lam * np.eye(gram.shape[0]), f.T @ (y - f @ prior))


def shrunk(moment: np.ndarray, rows: int) -> np.ndarray:
    """A second moment estimated from `rows` positions, shrunk towards a multiple of the
    identity by p/(p+rows) (p: its size): with few positions (an SE block's 1x1 convs see one
    per sample) the estimate fits the samples, not the layer; the identity is the data-free
    case."""
    p = moment.shape[0]
    rho = p / (p + rows)
    return (1 - rho) * moment + rho * np.trace(moment) / p * np.eye(p)


class Factorizer:
    """Factors of one layer at any rank; what does not depend on the rank (the bases, the
    input reduction's SVD) is computed once. `data`: the layer's calibration inputs, or None
    for data-free factors."""

    def __init__(self, method: str, w: np.ndarray, bias: np.ndarray | None,
                 data: "PatchData | None"):
        self.method, self.data = method, data
        self.w = w.astype(np.float64)
        self.bias = None if bias is None else bias.astype(np.float64)
        self._basis = None

    def factors(self, ranks: tuple[int, ...]) -> Factors:
        if self.method == "svd":
            return self.svd(ranks[0])
        return self.tucker2(*ranks)

    # W[M, C, *k] ~= U V with V[r, C, *k]: U is the top of W S W^T (S: the second moment of
    # the input patches, flattened like W's rows; the identity data-free) - the least output
    # error on that data. Computed as the left singular vectors of W S^1/2 ([M, C]: cheap
    # when M is large, e.g. a 6625-class classifier).
    def svd(self, r: int) -> Factors:
        m = self.w.shape[0]
        wf = self.w.reshape(m, -1)
        if self._basis is None:
            moment = self.data.patch_moment() if self.data is not None else None
            if m <= wf.shape[1]:          # eigenvectors of the [M, M] W S W^T
                out = wf @ moment @ wf.T if moment is not None else wf @ wf.T
                self._basis = _top_eigvecs(out, m)
            else:                          # left singular vectors of the [M, C] W S^1/2
                a = wf @ _sym_power(moment, 0.5) if moment is not None else wf
                u, _, _ = np.linalg.svd(a, full_matrices=False)
                self._basis = _deterministic_rows(u.T).T
        u = self._basis[:, :r]
        return Factors("svd", (r,), (u.T @ wf).reshape((r,) + self.w.shape[1:]), None, u,
                       self.bias)

    def _reduction(self) -> np.ndarray:
        """Rows: every input-channel direction, most important first (see the module doc)."""
        if self._basis is not None:
            return self._basis
        m, c = self.w.shape[:2]
        taps = int(np.prod(self.w.shape[2:]))
        wk = np.moveaxis(self.w.reshape(m, c, taps), 2, 1).reshape(m * taps, c)
        gram = wk.T @ wk                                                    # sum_k W_k^T W_k
        if self.data is None:
            self._basis = _top_eigvecs(gram, c).T
        else:
            s = shrunk(self.data.channel_moment, self.data.positions)
            floor = 1e-9 * max(np.trace(s) / c, 1e-30)
            _, _, qt = np.linalg.svd(_sym_power(gram, 0.5) @ _sym_power(s, 0.5, floor))
            self._basis = _deterministic_rows(qt @ _sym_power(s, -0.5, floor))
        return self._basis

    def tucker2(self, r_in: int, r_out: int) -> Factors:
        """Tucker-2 of a KxK conv: data-free (HOSVD) or fitted to the data."""
        w, data = self.w, self.data
        m, c = w.shape[:2]
        taps = int(np.prod(w.shape[2:]))
        red = self._reduction()[:r_in]                                      # [r_in, C]
        if data is None:
            core_full = np.einsum("mcx,ic->mix", w.reshape(m, c, taps), red)
            flat = core_full.reshape(m, -1)
            u = _top_eigvecs(flat @ flat.T, r_out)
        else:
            z = np.einsum("ic,pcx->pix", red, data.patches).reshape(len(data.patches), -1)
            y = data.patches.reshape(len(data.patches), -1) @ w.reshape(m, -1).T
            # prior: the core mapping the reduced channels back through R's pseudo-inverse
            prior = np.einsum("mcx,ci->ixm", w.reshape(m, c, taps),
                              np.linalg.pinv(red)).reshape(r_in * taps, m)
            unknowns = r_in * taps
            coef = _lstsq(z, y, prior, unknowns / (unknowns + data.positions))
            pred = z @ coef
            u = _top_eigvecs(pred.T @ pred, r_out)
            core_full = coef.T.reshape(m, r_in, taps)
        core = np.einsum("mo,mix->oix", u, core_full).reshape((r_out, r_in) + w.shape[2:])
        first = red.reshape((r_in, c) + (1,) * (w.ndim - 2))
        return Factors("tucker2", (r_in, r_out), first, core, u, self.bias)


def _deterministic_rows(a: np.ndarray) -> np.ndarray:
    """Each row's sign fixed (largest component positive): identical builds."""
    sign = np.sign(a[np.arange(a.shape[0]), np.abs(a).argmax(axis=1)])
    return a * np.where(sign == 0, 1.0, sign)[:, None]


@dataclass
class PatchData:
    """A layer's input on calibration samples: patches[P, C, taps] at sampled output
    positions (what the conv reads there, zeros in the padding) and the channels' second
    moment E[x x^T] over every position."""
    patches: np.ndarray
    channel_moment: np.ndarray
    positions: int                   # output positions the samples hold (patches: a sample)

    def patch_moment(self) -> np.ndarray:
        p = self.patches.reshape(len(self.patches), -1)
        return shrunk(p.T @ p / max(len(p), 1), min(self.positions, len(p)))


def conv_patches(x: np.ndarray, w_shape: tuple[int, ...], attrs: dict, positions: int,
                 rng: np.random.Generator) -> np.ndarray:
    """[P, C, taps] patches of a 2-D (or 1-D) conv input x[N, C, *sp] at `positions`
    sampled output positions (all of them when there are fewer)."""
    n, c = x.shape[:2]
    nd = x.ndim - 2
    k, s, d, pads = (attrs["kernel_shape"], attrs["strides"], attrs["dilations"],
                     attrs["pads"])
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    xp = np.pad(x, pad_width)
    out = [(x.shape[2 + i] + pads[i] + pads[i + nd] - d[i] * (k[i] - 1) - 1) // s[i] + 1
           for i in range(nd)]
    total = n * int(np.prod(out))
    idx = np.arange(total) if total <= positions else \
        np.sort(rng.choice(total, positions, replace=False))
    coords = np.unravel_index(idx, [n] + out)
    taps = list(np.ndindex(*k))
    res = np.empty((len(idx), c, len(taps)), dtype=np.float64)
    for t, tap in enumerate(taps):
        where = (coords[0], slice(None)) + tuple(coords[1 + i] * s[i] + tap[i] * d[i]
                                                 for i in range(nd))
        # advanced indices around a slice: numpy puts the indexed axis first -> [P, C]
        res[:, :, t] = xp[where]
    return res


def channel_moment(x: np.ndarray) -> np.ndarray:
    """E[x x^T] over every position of x[N, C, ...] (or rows of x[..., C] with channels_last)."""
    c = x.shape[1]
    flat = np.moveaxis(x, 1, -1).reshape(-1, c).astype(np.float64)
    return flat.T @ flat / max(len(flat), 1)


def refit_last(z: np.ndarray, y: np.ndarray, with_bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The last factor U[M, r] (and bias[M]) minimising ||y - U z - b||^2 over rows
    z[P, r], y[P, M]."""
    f = np.concatenate([z, np.ones((len(z), 1))], axis=1) if with_bias else z
    coef = _lstsq(f.astype(np.float64), y.astype(np.float64))
    if with_bias:
        return coef[:-1].T, coef[-1]
    return coef.T, None
