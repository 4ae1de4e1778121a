"""Q3_K: super-blocks of 256 weights in 110 bytes = {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}.
Sixteen 6-bit signed scales (low nibbles in scales[0:8], high 2 bits in scales[8:12]); weight
e = h*128 + s*32 + l is q = ((qs[h*32 + l] >> 2s) & 3) - 4 * !(hmask[l] >> (4h + s) & 1), w = d * (sc - 32) * q."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, dot, f16_at
from .registry import register

BLOCK_BYTES = 110


@njit(**EXACT)
def scale(src, o, i):
    """Signed 6-bit scale i (< 16) of the Q3_K block at src[o]: low 4 bits in scales[0:8], high 2 in [8:12]."""
    lo = (np.int64(src[o + 96 + i]) & 15) if i < 8 else (np.int64(src[o + 88 + i]) >> 4)
    hs = (np.int64(src[o + 104 + (i & 3)]) >> (2 * (i >> 2))) & 3
    return (lo | (hs << 4)) - 32


@njit(**EXACT)
def dequant_row(src, dst, f16):
    """One row of Q3_K super-blocks -> f32, as gguf-py computes it."""
    dl = np.empty(16, np.float32)
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o + 108, f16)
        for i in range(16):
            dl[i] = d * np.float32(scale(src, o, i))
        for h in range(2):
            for s in range(4):
                for ll in range(32):
                    e = h * 128 + s * 32 + ll
                    ql = (np.int64(src[o + 32 + h * 32 + ll]) >> (2 * s)) & 3
                    hb = (np.int64(src[o + ll]) >> (h * 4 + s)) & 1
                    dst[b * 256 + e] = dl[e >> 4] * np.float32(ql - ((hb ^ 1) << 2))


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q3_K rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q3_K super-blocks {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}.

    Weight 128h + 32s + l: q = (2 bits of qs[32h + l]) | (bit 4h + s of hmask[l]) << 2, w = d*sc*(q - 4);
    runs of 16 share a scale. 32 f32 lanes per row.
    """
    n, nb = data.shape[0], x.shape[0] // 256
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o + 108, f16)
                for h in range(2):
                    for s in range(4):
                        d0 = d * np.float32(scale(row, o, 8 * h + 2 * s))
                        d1 = d * np.float32(scale(row, o, 8 * h + 2 * s + 1))
                        m0, m1 = np.float32(-4.0) * d0, np.float32(-4.0) * d1
                        qo = o + 32 + 32 * h
                        hb = 4 * h + s
                        xo = b * 256 + 128 * h + 32 * s
                        for i in range(16):
                            q0 = np.uint8(((row[qo + i] >> (2 * s)) & 3) | (((row[o + i] >> hb) & 1) << 2))
                            q1 = np.uint8(
                                ((row[qo + 16 + i] >> (2 * s)) & 3) | (((row[o + 16 + i] >> hb) & 1) << 2)
                            )
                            acc[i] += (d0 * np.float32(q0) + m0) * x[xo + i]
                            acc[16 + i] += (d1 * np.float32(q1) + m1) * x[xo + 16 + i]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, Q3_K blocks."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(X.shape[1], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            dequant_row(data[r], buf, f16)
            for t in range(X.shape[0]):
                out[t, r] = dot(buf, X[t])


register(GGMLType.Q3_K, dequant_rows, matvec, matmul)
