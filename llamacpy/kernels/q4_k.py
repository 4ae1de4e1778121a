"""Q4_K: super-blocks of 256 weights in 144 bytes = {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}.
Eight sub-blocks of 32 with 6-bit scale sc and min mn packed in scales[12]; sub-block i = 2p + s takes
nibble s of qs[32p : 32p + 32]; w = d*sc * q - dmin*mn."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import V32I8, kquant_body, row_dot, scales_q4_k

BLOCK_BYTES = 144


@njit(**EXACT)
def scale_min(src, o, i):
    """6-bit (scale, min) of sub-block i from the 12 packed bytes at src[o:o + 12] (Q4_K and Q5_K)."""
    if i < 4:
        return np.int64(src[o + i]) & 63, np.int64(src[o + i + 4]) & 63
    sc = (np.int64(src[o + i + 4]) & 15) | ((np.int64(src[o + i - 4]) >> 6) << 4)
    mn = (np.int64(src[o + i + 4]) >> 4) | ((np.int64(src[o + i]) >> 6) << 4)
    return sc, mn


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q4_K super-blocks -> f32, as gguf-py computes it: (d*sc) * q - (dmin*mn)."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        dmin = f16_at(src, o + 2, f16)
        for i in range(8):
            sc, mn = scale_min(src, o + 4, i)
            dl = d * np.float32(sc)
            ml = dmin * np.float32(mn)
            q0 = o + 16 + 32 * (i >> 1)
            qs = src[q0 : q0 + 32]
            sh = 4 * (i & 1)
            ds = dst[b * 256 + 32 * i : b * 256 + 32 * i + 32]
            for ll in range(qs.shape[0]):
                ds[ll] = dl * np.float32(np.uint8((qs[ll] >> sh) & 15)) - ml


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q4_K rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q4_K super-blocks {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}.

    Each 32-byte run of qs holds two sub-blocks (low, high nibbles): 32 f32 lanes per row (kept in registers), summed once.
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
                    xo = b * 256 + 64 * p
                    for j in range(32):
                        q = row[o + 16 + 32 * p + j]
                        acc[j] += (d0 * np.float32(np.uint8(q & 15)) - m0) * x[xo + j]
                        acc[j] += (d1 * np.float32(np.uint8(q >> 4)) - m1) * x[xo + 32 + j]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q4_K rows is dequantized once
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
    """The 8 runs of 32 weights (u8 0..15) with their scales; mins for the bsums term."""
    sm = scales_q4_k(e, e.at(blk, 4))  # 16 x i16: scales 0..7, mins 0..7
    runs = []
    for p in range(4):
        q = e.load(e.at(blk, 16 + 32 * p), V32I8)
        runs.append((e.field(q, 0, 15), e.shuffle(sm, None, [2 * p] * 16)))
        runs.append((e.field(q, 4, 15), e.shuffle(sm, None, [2 * p + 1] * 16)))
    mins = e.shuffle(sm, None, list(range(8, 16)))
    return runs, e.f16(blk), e.f16(e.at(blk, 2)), mins, None


_body = kquant_body(_runs, "q4", gemm_steps=4)
_dot1, _dot4 = row_dot(_body, BLOCK_BYTES, 1, "accm"), row_dot(_body, BLOCK_BYTES, 4, "accm")
_dot1x4 = row_dot(_body, BLOCK_BYTES, 1, "accm", nr=4)
_rdot1, _rdot4 = row_dot(_body, BLOCK_BYTES, 1, "repack"), row_dot(_body, BLOCK_BYTES, 4, "repack")
_rdot1x4 = row_dot(_body, BLOCK_BYTES, 1, "repack", nr=4)


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
    """out[t, r] = row r . activation row t, integer dots against Q8_K activations (ggml_vec_dot_q4_K_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))



@njit(**FAST)
def rows_repack(data, xq, xd, xs, out, r, r1):
    """Weight rows [r, r1) of vec_dot_repack: one parallel work item (and the fused decode step's unit)."""
    T = xq.shape[0]
    while r < r1:
        if T == 1 and r + 4 <= r1:
            for i in range(4):
                prefetch_row(data, r + i)
            _rdot1x4(data, xq, xd, xs, out, r, 0)
            r += 4
            continue
        prefetch_row(data, r)
        t = 0
        while t + 4 <= T:
            _rdot4(data, xq, xd, xs, out, r, t)
            t += 4
        while t < T:
            _rdot1(data, xq, xd, xs, out, r, t)
            t += 1
        r += 1


@njit(**FAST)
def rows_repack_gemv(data, xq, xd, xs, out, r, r1):
    """rows_repack with every activation row computed as a one-row step computes it (ggml's gemv, never
    its 4-row gemm, whose float sums round differently): checking drafted tokens (engine/speculative.py)
    must give the logits decoding gives. Each 4 weight rows stay in L1 across the activation rows."""
    T = xq.shape[0]
    while r < r1:
        if r + 4 <= r1:
            for i in range(4):
                prefetch_row(data, r + i)
            for t in range(T):
                _rdot1x4(data, xq, xd, xs, out, r, t)
            r += 4
            continue
        prefetch_row(data, r)
        for t in range(T):
            _rdot1(data, xq, xd, xs, out, r, t)
        r += 1


@njit(**FAST_PAR)
def vec_dot_repack(data, xq, xd, xs, out):
    """vec_dot with the arithmetic of ggml's repacked 8-row kernels (ggml_gemv_q4_K_8x8_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows_repack(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q4_K, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_K, vec_dot_repack)
