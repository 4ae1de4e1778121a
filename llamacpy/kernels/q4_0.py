"""Q4_0: blocks of 32 weights in 18 bytes = {f16 d; u8 qs[16]}; w[j] = d * ((qs[j] & 15) - 8),
w[j + 16] = d * ((qs[j] >> 4) - 8)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import V16I8, legacy_body, row_dot

BLOCK_BYTES = 18


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q4_0 blocks {f16 d; u8 qs[16]} -> f32, as gguf-py computes it: d * (q - 8)."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        qs = src[o + 2 : o + 18]
        lo = dst[b * 32 : b * 32 + 16]
        hi = dst[b * 32 + 16 : b * 32 + 32]
        for j in range(qs.shape[0]):
            q = qs[j]
            lo[j] = d * (np.float32(np.uint8(q & 15)) - np.float32(8.0))
            hi[j] = d * (np.float32(np.uint8(q >> 4)) - np.float32(8.0))


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """Q4_0 rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on Q4_0 blocks {f16 d; u8 qs[16]}: w = d*q - 8d, 32 f32 lanes per row."""
    n, nb = data.shape[0], x.shape[0] // 32
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                m = np.float32(-8.0) * d
                for j in range(16):
                    q = row[o + 2 + j]
                    acc[j] += (d * np.float32(np.uint8(q & 15)) + m) * x[b * 32 + j]
                    acc[16 + j] += (d * np.float32(np.uint8(q >> 4)) + m) * x[b * 32 + 16 + j]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q4_0 rows is dequantized once
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
    return e.nibbles(e.load(e.at(blk, 2), V16I8)), e.f16(blk), None


_body = legacy_body(_decode, offset=8)
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
    """out[t, r] = row r . activation row t, integer dots against Q8_0 activations (ggml_vec_dot_q4_0_q8_0)."""
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
    """vec_dot with the arithmetic of ggml's repacked 8-row kernels (ggml_gemv_q4_0_8x8_q8_0)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows_repack(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q4_0, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_0, vec_dot_repack)
