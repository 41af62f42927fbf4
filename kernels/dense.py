"""Gemm and MatMul: one batched matrix-product loop with float64 accumulation.
Integer MatMul uses numpy (exact, wraps like C)."""
from __future__ import annotations

import numpy as np
from numba import njit

from .registry import contiguous, compute_dtype, kernel


@njit(cache=True)
def _bmm(a, b, out):
    # a [B,M,K] b [B,K,N] → out [B,M,N]; i-k-j order keeps the inner loop contiguous
    nb, M, K = a.shape
    N = b.shape[2]
    row = np.empty(N, np.float64)
    for s in range(nb):
        for i in range(M):
            row[:] = 0.0
            for k in range(K):
                av = np.float64(a[s, i, k])
                brow = b[s, k]
                for j in range(N):  # unsigned index: no wraparound check, so it vectorizes
                    row[np.uint64(j)] += av * brow[np.uint64(j)]
            for j in range(N):
                out[s, i, j] = row[j]


@njit(cache=True)
def _bmm_nt(a, bt, out):
    # a [B,M,K] bt [B,N,K] → out [B,M,N] = a @ bt^T: dot products of contiguous rows
    # (Gemm with transB, the usual layout of fully connected weights)
    nb, M, K = a.shape
    N = bt.shape[1]
    for s in range(nb):
        for i in range(M):
            arow = a[s, i]
            for j in range(N):
                brow = bt[s, j]
                acc = 0.0
                for k in range(K):
                    acc += np.float64(arow[np.uint64(k)]) * np.float64(brow[np.uint64(k)])
                out[s, i, j] = acc


def matmul_f64(a: np.ndarray, b: np.ndarray, b_transposed: bool = False) -> np.ndarray:
    """Batched a @ b ([B,M,K] @ [B,K,N], or b given as [B,N,K] when b_transposed)
    computed in float64, returned as float64."""
    n = b.shape[1] if b_transposed else b.shape[2]
    out = np.empty((a.shape[0], a.shape[1], n), np.float64)
    (_bmm_nt if b_transposed else _bmm)(contiguous(a), contiguous(b), out)
    return out


@kernel("MatMul")
def matmul(op, ins):
    a, b = ins
    if a.dtype.kind != "f":
        return [np.matmul(a, b).astype(a.dtype, copy=False)]
    dtype = compute_dtype(a)
    a2 = a.reshape(1, -1) if a.ndim == 1 else a     # 1-D operands are promoted, then the
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b     # added dim is removed from the result
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    (M, K), N = a2.shape[-2:], b2.shape[-1]
    if b2.shape[-2] != K:
        raise ValueError(f"inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    A = np.broadcast_to(a2.astype(dtype, copy=False), batch + (M, K)).reshape(-1, M, K)
    B = np.broadcast_to(b2.astype(dtype, copy=False), batch + (K, N)).reshape(-1, K, N)
    y = matmul_f64(A, B).reshape(batch + (M, N))
    if a.ndim == 1:
        y = y.reshape(y.shape[:-2] + (N,))
    if b.ndim == 1:
        y = y.reshape(y.shape[:-1])
    return [y.astype(a.dtype)]


@kernel("Gemm")
def gemm(op, ins):
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    at = op.attrs
    dtype = compute_dtype(a)
    A = (a.T if at["transA"] else a).astype(dtype, copy=False)
    B = b.astype(dtype, copy=False)  # used as stored: B^T's rows are B's rows when transB
    k_b = B.shape[1] if at["transB"] else B.shape[0]
    if A.shape[1] != k_b:
        raise ValueError(f"inner dimensions differ: A' is {list(A.shape)}, B is "
                         f"{list(B.shape)} with transB={at['transB']}")
    y = matmul_f64(A[None], B[None], bool(at["transB"]))[0] * float(at["alpha"])
    if c is not None:
        y = y + float(at["beta"]) * c.astype(np.float64)
    return [y.astype(a.dtype)]
