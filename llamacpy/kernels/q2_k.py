"""Q2_K: super-blocks of 256 weights in 84 bytes = {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}.
Sixteen sub-blocks of 16 with 4-bit scale (low nibble) and min (high nibble); weight h*128 + s*32 + l
(h < 2, s < 4, l < 32) is q = (qs[h*32 + l] >> 2s) & 3, w = d*sc * q - dmin*mn of its sub-block."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import V16I8, V16I16, V32I8, kquant_body, row_dot

BLOCK_BYTES = 84


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q2_K super-blocks -> f32, as gguf-py computes it: (d*sc) * q - (dmin*mn)."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o + 80, f16)
        dmin = f16_at(src, o + 82, f16)
        for h in range(2):
            for s in range(4):
                for half in range(2):
                    sc = src[o + h * 8 + s * 2 + half]
                    dl = d * np.float32(np.uint8(sc & 15))
                    ml = dmin * np.float32(np.uint8(sc >> 4))
                    qs = src[o + 16 + 32 * h + 16 * half : o + 32 + 32 * h + 16 * half]
                    e = b * 256 + 128 * h + 32 * s + 16 * half
                    ds = dst[e : e + 16]
                    for i in range(qs.shape[0]):
                        ds[i] = dl * np.float32(np.uint8((qs[i] >> (2 * s)) & 3)) - ml


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q2_K rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q2_K super-blocks {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}.

    Weight 128h + 32s + l is bits 2s, 2s+1 of qs[32h + l]; scale/min change every 16 weights. 32 f32 lanes
    per row (indices depend only on the unrolled lane loop, so they stay in registers).
    """
    n, nb = data.shape[0], x.shape[0] // 256
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o + 80, f16)
                dmin = f16_at(row, o + 82, f16)
                for h in range(2):
                    for s in range(4):
                        sc0 = row[o + 8 * h + 2 * s]
                        sc1 = row[o + 8 * h + 2 * s + 1]
                        d0, m0 = d * np.float32(np.uint8(sc0 & 15)), dmin * np.float32(np.uint8(sc0 >> 4))
                        d1, m1 = d * np.float32(np.uint8(sc1 & 15)), dmin * np.float32(np.uint8(sc1 >> 4))
                        qo = o + 16 + 32 * h
                        xo = b * 256 + 128 * h + 32 * s
                        for i in range(16):
                            q0 = np.uint8((row[qo + i] >> (2 * s)) & 3)
                            q1 = np.uint8((row[qo + 16 + i] >> (2 * s)) & 3)
                            acc[i] += (d0 * np.float32(q0) - m0) * x[xo + i]
                            acc[16 + i] += (d1 * np.float32(q1) - m1) * x[xo + 16 + i]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q2_K rows is dequantized once
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
    """The 8 runs of 32 weights (u8 0..3) with their 4-bit scales; 4-bit mins for the bsums term."""
    sb = e.load(blk, V16I8)
    sc = e.b.zext(e.field(sb, 0, 15), V16I16)
    mins = e.b.zext(e.field(sb, 4, 15), V16I16)
    runs = []
    for h in range(2):
        q = e.load(e.at(blk, 16 + 32 * h), V32I8)
        for s in range(4):
            runs.append((e.field(q, 2 * s, 3), e.scales16(sc, 8 * h + 2 * s)))
    return runs, e.f16(e.at(blk, 80)), e.f16(e.at(blk, 82)), mins, None


_body = kquant_body(_runs, "q2", gemm_steps=2)
_dot1, _dot4 = row_dot(_body, BLOCK_BYTES, 1), row_dot(_body, BLOCK_BYTES, 4)
_dot1x4 = row_dot(_body, BLOCK_BYTES, 1, None, nr=4)
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
    """out[t, r] = row r . activation row t, integer dots against Q8_K activations (ggml_vec_dot_q2_K_q8_K)."""
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
    """vec_dot with the arithmetic of ggml's repacked 8-row kernels (ggml_gemv_q2_K_8x8_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows_repack(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q2_K, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_K, vec_dot_repack)
