"""Q5_1: blocks of 32 weights in 24 bytes = {f16 d; f16 m; u32 qh; u8 qs[16]}; 5-bit q as in Q5_0,
w = d * q + m."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, dot, f16_at
from .registry import register

BLOCK_BYTES = 24


@njit(**EXACT)
def dequant_row(src, dst, f16):
    """One row of Q5_1 blocks {f16 d; f16 m; u32 qh; u8 qs[16]} -> f32, as gguf-py computes it."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        m = f16_at(src, o + 2, f16)
        qh = (
            np.int64(src[o + 4])
            | (np.int64(src[o + 5]) << 8)
            | (np.int64(src[o + 6]) << 16)
            | (np.int64(src[o + 7]) << 24)
        )
        for j in range(16):
            q = np.int64(src[o + 8 + j])
            lo = (q & 15) | (((qh >> j) & 1) << 4)
            hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
            dst[b * 32 + j] = d * np.float32(lo) + m
            dst[b * 32 + 16 + j] = d * np.float32(hi) + m


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q5_1 rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x for Q5_1 blocks (row by row: dequantize into a buffer, then dot)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(x.shape[0], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            out[r] = dot(buf, x)


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, Q5_1 blocks."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(X.shape[1], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            for t in range(X.shape[0]):
                out[t, r] = dot(buf, X[t])


register(GGMLType.Q5_1, dequant_rows, matvec, matmul)
