"""Q5_K: super-blocks of 256 weights in 176 bytes = {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}.
As Q4_K, plus the 5th bit of weight l of sub-block i in bit i of qh[l]; w = d*sc * q - dmin*mn."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .q4_k import scale_min
from .registry import register
from .simd import V32I8, kquant_body, row_dot, scales_q4_k

BLOCK_BYTES = 176


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q5_K super-blocks -> f32, as gguf-py computes it: (d*sc) * q - (dmin*mn)."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        dmin = f16_at(src, o + 2, f16)
        qh = src[o + 16 : o + 48]
        for i in range(8):
            sc, mn = scale_min(src, o + 4, i)
            dl = d * np.float32(sc)
            ml = dmin * np.float32(mn)
            q0 = o + 48 + 32 * (i >> 1)
            qs = src[q0 : q0 + 32]
            sh = 4 * (i & 1)
            ds = dst[b * 256 + 32 * i : b * 256 + 32 * i + 32]
            for ll in range(qs.shape[0]):
                q = np.uint8(((qs[ll] >> sh) & 15) | (((qh[ll] >> i) & 1) << 4))
                ds[ll] = dl * np.float32(q) - ml


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q5_K rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q5_K super-blocks {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}.

    Sub-blocks 2p, 2p+1 are the low/high nibbles of qs[32p + l] plus bits 2p, 2p+1 of qh[l]; 32 f32
    lanes per row (accumulator indices depend only on the unrolled lane loop, so they stay in registers).
    """
    n, nb = data.shape[0], x.shape[0] // 256
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                dmin = f16_at(row, o + 2, f16)
                for p in range(4):
                    sc0, mn0 = scale_min(row, o + 4, 2 * p)
                    sc1, mn1 = scale_min(row, o + 4, 2 * p + 1)
                    d0, m0 = d * np.float32(sc0), dmin * np.float32(mn0)
                    d1, m1 = d * np.float32(sc1), dmin * np.float32(mn1)
                    # 5th bits by mask, not shift: a variable shift keeps numba's int64 lanes, a byte AND
                    # narrows to 32-bit lanes; (qh & mask) * 16/mask is exactly 16 * bit
                    k0 = np.uint8(1 << (2 * p))
                    k1 = np.uint8(2 << (2 * p))
                    e0 = d0 * (np.float32(16.0) / np.float32(k0))
                    e1 = d1 * (np.float32(16.0) / np.float32(k1))
                    xo = b * 256 + 64 * p
                    for j in range(32):
                        q = row[o + 48 + 32 * p + j]
                        hq = row[o + 16 + j]
                        lo = d0 * np.float32(np.uint8(q & 15)) + e0 * np.float32(np.uint8(hq & k0)) - m0
                        hi = d1 * np.float32(np.uint8(q >> 4)) + e1 * np.float32(np.uint8(hq & k1)) - m1
                        acc[j] += lo * x[xo + j]
                        acc[j] += hi * x[xo + 32 + j]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q5_K rows is dequantized once
    into an L2-resident buffer and multiplied with every row of X."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(n, r0 + CHUNK)
        buf = np.empty((r1 - r0, X.shape[1]), np.float32)
        for r in range(r0, r1):
            dequant_row(data[r], buf[r - r0], f16)
        small_gemm(buf, X, out, r0)



def _runs(e, blk):
    """The 8 runs of 32 weights (u8 0..31) with their scales; mins for the bsums term."""
    sm = scales_q4_k(e, e.at(blk, 4))
    qh = e.load(e.at(blk, 16), V32I8)
    runs = []
    for p in range(4):
        q = e.load(e.at(blk, 48 + 32 * p), V32I8)
        for s in range(2):
            i = 2 * p + s
            w = e.b.or_(e.field(q, 4 * s, 15), e.b.shl(e.field(qh, i, 1), e.const(V32I8, 4)))
            runs.append((w, e.shuffle(sm, None, [i] * 16)))
    mins = e.shuffle(sm, None, list(range(8, 16)))
    return runs, e.f16(blk), e.f16(e.at(blk, 2)), mins, None


_body = kquant_body(_runs, "q5")
_dot1, _dot4 = row_dot(_body, BLOCK_BYTES, 1, "summ"), row_dot(_body, BLOCK_BYTES, 4, "summ")
_dot1x4 = row_dot(_body, BLOCK_BYTES, 1, "summ", nr=4)


@njit(**FAST)
def rows(data, xq, xd, xs, out, r, r1):
    """Weight rows [r, r1) of vec_dot: one parallel work item (and the fused decode step's unit)."""
    T = xq.shape[0]
    while r < r1:
        if T == 1 and r + 4 <= r1:
            for i in range(4):
                prefetch_row(data, r + i)
            _dot1x4(data, xq, xd, xs, out, r, 0)
            r += 4
            continue
        prefetch_row(data, r)
        t = 0
        while t + 4 <= T:
            _dot4(data, xq, xd, xs, out, r, t)
            t += 4
        while t < T:
            _dot1(data, xq, xd, xs, out, r, t)
            t += 1
        r += 1


@njit(**FAST_PAR)
def vec_dot(data, xq, xd, xs, out):
    """out[t, r] = row r . activation row t, integer dots against Q8_K activations (ggml_vec_dot_q5_K_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q5_K, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_K)
