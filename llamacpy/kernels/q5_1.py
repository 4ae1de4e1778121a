"""Q5_1: blocks of 32 weights in 24 bytes = {f16 d; f16 m; u32 qh; u8 qs[16]}; 5-bit q as in Q5_0,
w = d * q + m."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import I32, V16I8, legacy_body, row_dot

BLOCK_BYTES = 24


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q5_1 blocks {f16 d; f16 m; u32 qh; u8 qs[16]} -> f32, as gguf-py computes it: d * q + m."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        m = f16_at(src, o + 2, f16)
        qh = (
            np.uint64(src[o + 4])
            | (np.uint64(src[o + 5]) << np.uint64(8))
            | (np.uint64(src[o + 6]) << np.uint64(16))
            | (np.uint64(src[o + 7]) << np.uint64(24))
        )
        qs = src[o + 8 : o + 24]
        lo = dst[b * 32 : b * 32 + 16]
        hi = dst[b * 32 + 16 : b * 32 + 32]
        for j in range(qs.shape[0]):
            q = qs[j]
            ju = np.uint64(j)
            ql = np.uint8((q & 15) | (((qh >> ju) & np.uint64(1)) << np.uint64(4)))
            qu = np.uint8((q >> 4) | (((qh >> (ju + np.uint64(16))) & np.uint64(1)) << np.uint64(4)))
            lo[j] = d * np.float32(ql) + m
            hi[j] = d * np.float32(qu) + m


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q5_1 rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q5_1 blocks {f16 d; f16 m; u32 qh; u8 qs[16]}: w = d*(lo + 16*hbit) + m.

    32 f32 lanes per row. The 5th bit of lane j is isolated as (qh16 & (1 << j)) * 16 / 2^j with
    per-lane constant masks: a shift by the lane index would keep numba's int64 lanes (4x slower).
    """
    n, nb = data.shape[0], x.shape[0] // 32
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                m = f16_at(row, o + 2, f16)
                h01 = np.uint16(row[o + 4]) | (np.uint16(row[o + 5]) << np.uint16(8))
                h23 = np.uint16(row[o + 6]) | (np.uint16(row[o + 7]) << np.uint16(8))
                for j in range(16):
                    q = row[o + 8 + j]
                    k = np.float32(16.0 / (1 << j))
                    lo = np.float32(np.uint8(q & 15)) + np.float32(np.uint16(h01 & (1 << j))) * k
                    hi = np.float32(np.uint8(q >> 4)) + np.float32(np.uint16(h23 & (1 << j))) * k
                    acc[j] += (d * lo + m) * x[b * 32 + j]
                    acc[16 + j] += (d * hi + m) * x[b * 32 + 16 + j]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q5_1 rows is dequantized once
    into an L2-resident buffer and multiplied with every row of X."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(n, r0 + CHUNK)
        buf = np.empty((r1 - r0, X.shape[1]), np.float32)
        for r in range(r0, r1):
            dequant_row(data[r], buf[r - r0], f16)
        small_gemm(buf, X, out, r0)



def _decode(e, blk):
    q = e.b.or_(e.nibbles(e.load(e.at(blk, 8), V16I8)), e.bits32(e.load(e.at(blk, 4), I32), 16))
    return q, e.f16(blk), e.f16(e.at(blk, 2))


_body = legacy_body(_decode)
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
    """out[t, r] = row r . activation row t, integer dots against Q8_1 activations (ggml_vec_dot_q5_1_q8_1)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q5_1, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_1)
