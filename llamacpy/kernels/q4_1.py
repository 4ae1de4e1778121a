"""Q4_1: blocks of 32 weights in 20 bytes = {f16 d; f16 m; u8 qs[16]}; w[j] = d * (qs[j] & 15) + m,
w[j + 16] = d * (qs[j] >> 4) + m."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, dot, f16_at
from .registry import register

BLOCK_BYTES = 20


@njit(**EXACT)
def dequant_row(src, dst, f16):
    """One row of Q4_1 blocks {f16 d; f16 m; u8 qs[16]} -> f32, as gguf-py computes it."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        m = f16_at(src, o + 2, f16)
        for j in range(16):
            q = src[o + 4 + j]
            dst[b * 32 + j] = d * np.float32(q & 15) + m
            dst[b * 32 + 16 + j] = d * np.float32(q >> 4) + m


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q4_1 rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q4_1 blocks {f16 d; f16 m; u8 qs[16]}: w = d*q + m, 32 f32 lanes per row."""
    n, nb = data.shape[0], x.shape[0] // 32
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                m = f16_at(row, o + 2, f16)
                for j in range(16):
                    q = row[o + 4 + j]
                    acc[j] += (d * np.float32(np.uint8(q & 15)) + m) * x[b * 32 + j]
                    acc[16 + j] += (d * np.float32(np.uint8(q >> 4)) + m) * x[b * 32 + 16 + j]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, Q4_1 blocks."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(X.shape[1], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            for t in range(X.shape[0]):
                out[t, r] = dot(buf, X[t])


register(GGMLType.Q4_1, dequant_rows, matvec, matmul)
