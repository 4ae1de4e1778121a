"""Q5_0: blocks of 32 weights in 22 bytes = {f16 d; u32 qh; u8 qs[16]}; the 5th bit of weight j is bit j
of qh; w[j] = d * ((qs[j] & 15 | bit j << 4) - 16), w[j + 16] = d * ((qs[j] >> 4 | bit j+16 << 4) - 16)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, bit_sums, dot, f16_at
from .registry import register

BLOCK_BYTES = 22


@njit(**EXACT)
def dequant_row(src, dst, f16):
    """One row of Q5_0 blocks {f16 d; u32 qh; u8 qs[16]} -> f32, as gguf-py computes it."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        qh = (
            np.int64(src[o + 2])
            | (np.int64(src[o + 3]) << 8)
            | (np.int64(src[o + 4]) << 16)
            | (np.int64(src[o + 5]) << 24)
        )
        for j in range(16):
            q = np.int64(src[o + 6 + j])
            lo = (q & 15) | (((qh >> j) & 1) << 4)
            hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
            dst[b * 32 + j] = d * np.float32(lo - 16)
            dst[b * 32 + 16 + j] = d * np.float32(hi - 16)


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q5_0 rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q5_0 blocks {f16 d; u32 qh; u8 qs[16]}: w = d*(lo + 16*hbit) - 16d.

    Low nibbles go through 32 f32 lanes per row; the 5th bits through `bit_sums` lookups, 4 per block.
    """
    n, nb = data.shape[0], x.shape[0] // 32
    hsum = bit_sums(x, np.float32(16.0))
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            row = data[r]
            acc = np.zeros(32, np.float32)
            hacc = np.float32(0.0)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                m = np.float32(-16.0) * d
                h = 4 * b
                hacc += d * (
                    hsum[h, row[o + 2]]
                    + hsum[h + 1, row[o + 3]]
                    + hsum[h + 2, row[o + 4]]
                    + hsum[h + 3, row[o + 5]]
                )
                for j in range(16):
                    q = row[o + 6 + j]
                    acc[j] += (d * np.float32(np.uint8(q & 15)) + m) * x[b * 32 + j]
                    acc[16 + j] += (d * np.float32(np.uint8(q >> 4)) + m) * x[b * 32 + 16 + j]
            out[r] = acc.sum() + hacc


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, Q5_0 blocks."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(X.shape[1], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            for t in range(X.shape[0]):
                out[t, r] = dot(buf, X[t])


register(GGMLType.Q5_0, dequant_rows, matvec, matmul)
