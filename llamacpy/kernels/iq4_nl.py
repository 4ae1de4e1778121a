"""IQ4_NL: blocks of 32 weights in 18 bytes = {f16 d; u8 qs[16]}, Q4_0's layout with a non-linear code
book: w[j] = d * KVALUES[qs[j] & 15], w[j + 16] = d * KVALUES[qs[j] >> 4]."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import V16I8, legacy_body, row_dot

BLOCK_BYTES = 18
# kvalues_iq4nl of ggml-common.h (and gguf-py's IQ4_NL.kvalues)
KVALUES_LIST = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
KVALUES = np.array(KVALUES_LIST, np.float32)


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of IQ4_NL blocks -> f32, as gguf-py computes it: d * kvalues[q]."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        qs = src[o + 2 : o + 18]
        lo = dst[b * 32 : b * 32 + 16]
        hi = dst[b * 32 + 16 : b * 32 + 32]
        for j in range(qs.shape[0]):
            q = qs[j]
            lo[j] = d * KVALUES[q & 15]
            hi[j] = d * KVALUES[q >> 4]


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """IQ4_NL rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on IQ4_NL blocks: 32 f32 lanes per row, one table lookup per weight."""
    n, nb = data.shape[0], x.shape[0] // 32
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                for j in range(16):
                    q = row[o + 2 + j]
                    acc[j] += d * KVALUES[q & 15] * x[b * 32 + j]
                    acc[16 + j] += d * KVALUES[q >> 4] * x[b * 32 + 16 + j]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X: each chunk of rows dequantized once into L2, then 4x4 tiles."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(n, r0 + CHUNK)
        buf = np.empty((r1 - r0, X.shape[1]), np.float32)
        for r in range(r0, r1):
            dequant_row(data[r], buf[r - r0], f16)
        small_gemm(buf, X, out, r0)


def _decode(e, blk):
    return e.lut16(e.nibbles(e.load(e.at(blk, 2), V16I8)), KVALUES_LIST), e.f16(blk), None


_body = legacy_body(_decode, signed=True)
# ggml_vec_dot_iq4_nl_q8_0 (even/odd blocks in two accumulators); the repacked 8-row kernels
# (ggml_gemv/gemm_iq4_nl_8x8_q8_0) share Q4_0's template: one scalar sum per row
_dot1, _dot4 = row_dot(_body, BLOCK_BYTES, 1, "pair"), row_dot(_body, BLOCK_BYTES, 4, "pair")
_rdot1, _rdot4 = row_dot(_body, BLOCK_BYTES, 1, "repack"), row_dot(_body, BLOCK_BYTES, 4, "repack")
_rdot1x4 = row_dot(_body, BLOCK_BYTES, 1, "repack", nr=4)


@njit(**FAST)
def rows(data, xq, xd, xs, out, r, r1):
    """Weight rows [r, r1) of vec_dot: one parallel work item (and the fused decode step's unit)."""
    T = xq.shape[0]
    while r < r1:
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
    """out[t, r] = row r . activation row t against Q8_0 activations (ggml_vec_dot_iq4_nl_q8_0)."""
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
    """rows_repack with every activation row computed as a one-row step computes it (see q4_0)."""
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
    """vec_dot with the arithmetic of ggml's repacked 8-row kernels (ggml_gemv_iq4_nl_8x8_q8_0)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows_repack(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.IQ4_NL, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_0, vec_dot_repack)
