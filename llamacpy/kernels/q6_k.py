"""Q6_K: super-blocks of 256 weights in 210 bytes = {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.
Weight e = h*128 + s*32 + l has low nibble s>>1 of ql[h*64 + (s&1)*32 + l] and high bits
(qh[h*32 + l] >> 2s) & 3; w = d * scales[e >> 4] * (q - 32)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import V16I8, V16I16, V32I8, kquant_body, row_dot

BLOCK_BYTES = 210


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q6_K super-blocks -> f32, as gguf-py computes it: (d * sc) * (q - 32)."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o + 208, f16)
        for h in range(2):
            for k in range(4):
                ql0 = o + 64 * h + 32 * (k & 1)
                ls = 4 * (k >> 1)
                for half in range(2):
                    s = d * np.float32(np.int8(src[o + 192 + 8 * h + 2 * k + half]))
                    ql = src[ql0 + 16 * half : ql0 + 16 * half + 16]
                    qh = src[o + 128 + 32 * h + 16 * half : o + 144 + 32 * h + 16 * half]
                    e = b * 256 + 128 * h + 32 * k + 16 * half
                    ds = dst[e : e + 16]
                    for i in range(ql.shape[0]):
                        q = np.uint8(((ql[i] >> ls) & 15) | (((qh[i] >> (2 * k)) & 3) << 4))
                        ds[i] = s * (np.float32(q) - np.float32(32.0))


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
            prefetch_row(data, r)
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
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q6_K rows is dequantized once
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
    """The 8 runs of 32 weights (u8 0..63, i.e. q + 32) with their 16 signed scales."""
    sc = e.b.sext(e.load(e.at(blk, 192), V16I8), V16I16)
    runs = []
    for h in range(2):
        qh = e.load(e.at(blk, 128 + 32 * h), V32I8)
        for k in range(4):
            ql = e.load(e.at(blk, 64 * h + 32 * (k & 1)), V32I8)
            w = e.b.or_(e.field(ql, 4 * (k >> 1), 15), e.b.shl(e.field(qh, 2 * k, 3), e.const(V32I8, 4)))
            runs.append((w, e.scales16(sc, 8 * h + 2 * k)))
    return runs, e.f16(e.at(blk, 208)), None, None, (32, sc)


_body = kquant_body(_runs)
_dot1, _dot4 = row_dot(_body, BLOCK_BYTES, 1), row_dot(_body, BLOCK_BYTES, 4)
_dot1x4 = row_dot(_body, BLOCK_BYTES, 1, None, nr=4)


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
    """out[t, r] = row r . activation row t, integer dots against Q8_K activations (ggml_vec_dot_q6_K_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q6_K, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_K)
