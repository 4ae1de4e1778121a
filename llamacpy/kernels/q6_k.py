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
    """out = W x fused on Q6_K super-blocks {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.

    Weight 128h + 32k + l (k < 4, l < 32) takes nibble k >> 1 of ql[64h + 32(k & 1) + l] and bits 2k, 2k+1
    of qh[32h + l]; its scale changes every 16 weights, so each run of 16 lanes is one simple loop
    (uniform shifts vectorize; mixing the four streams in one loop does not). 128 f32 lanes per row.
    """
    n, nb = data.shape[0], x.shape[0] // 256
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            row = data[r]
            acc = np.zeros(
                128, np.float32
            )  # four independent chains: FMA latency, not throughput, bound otherwise
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o + 208, f16)
                for h in range(2):
                    for k in range(4):
                        qlo = o + 64 * h + 32 * (k & 1)
                        qho = o + 128 + 32 * h
                        ls = 4 * (k >> 1)
                        hs = 2 * k
                        xo = b * 256 + 128 * h + 32 * k
                        for half in range(2):
                            s = d * np.float32(np.int8(row[o + 192 + 8 * h + 2 * k + half]))
                            m = np.float32(-32.0) * s
                            for i in range(16):
                                ll = 16 * half + i
                                q = np.uint8(
                                    ((row[qlo + ll] >> ls) & 15) | (((row[qho + ll] >> hs) & 3) << 4)
                                )
                                acc[32 * k + ll] += (s * np.float32(q) + m) * x[xo + ll]
            out[r] = acc.sum()


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
