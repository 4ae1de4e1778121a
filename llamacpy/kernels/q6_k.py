"""Q6_K: super-blocks of 256 weights in 210 bytes = {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.
Weight e = h*128 + s*32 + l has low nibble s>>1 of ql[h*64 + (s&1)*32 + l] and high bits
(qh[h*32 + l] >> 2s) & 3; w = d * scales[e >> 4] * (q - 32)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, dot, f16_at
from .registry import register

BLOCK_BYTES = 210


@njit(**EXACT)
def dequant_row(src, dst, f16):
    """One row of Q6_K super-blocks -> f32, as gguf-py computes it."""
    dl = np.empty(16, np.float32)
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o + 208, f16)
        for i in range(16):
            dl[i] = d * np.float32(np.int8(src[o + 192 + i]))
        for h in range(2):
            for s in range(4):
                for ll in range(32):
                    e = h * 128 + s * 32 + ll
                    ql = (np.int64(src[o + h * 64 + (s & 1) * 32 + ll]) >> (4 * (s >> 1))) & 15
                    qh = (np.int64(src[o + 128 + h * 32 + ll]) >> (2 * s)) & 3
                    dst[b * 256 + e] = dl[e >> 4] * np.float32((ql | (qh << 4)) - 32)


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q6_K rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x for Q6_K blocks (row by row: dequantize into a buffer, then dot)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(x.shape[0], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            out[r] = dot(buf, x)


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, Q6_K blocks."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(X.shape[1], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            for t in range(X.shape[0]):
                out[t, r] = dot(buf, X[t])


register(GGMLType.Q6_K, dequant_rows, matvec, matmul)
