"""Q3_K: super-blocks of 256 weights in 110 bytes = {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}.
Sixteen 6-bit signed scales (low nibbles in scales[0:8], high 2 bits in scales[8:12]); weight
e = h*128 + s*32 + l is q = ((qs[h*32 + l] >> 2s) & 3) - 4 * !(hmask[l] >> (4h + s) & 1), w = d * (sc - 32) * q."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .registry import register
from .simd import V32I8, kquant_body, row_dot, scales_q3_k

BLOCK_BYTES = 110


@njit(**EXACT)
def scale(src, o, i):
    """Signed 6-bit scale i (< 16) of the Q3_K block at src[o]: low 4 bits in scales[0:8], high 2 in [8:12]."""
    lo = (np.int64(src[o + 96 + i]) & 15) if i < 8 else (np.int64(src[o + 88 + i]) >> 4)
    hs = (np.int64(src[o + 104 + (i & 3)]) >> (2 * (i >> 2))) & 3
    return (lo | (hs << 4)) - 32


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of Q3_K super-blocks -> f32, as gguf-py computes it: (d * sc) * q."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o + 108, f16)
        for h in range(2):
            for s in range(4):
                for half in range(2):
                    dl = d * np.float32(scale(src, o, 8 * h + 2 * s + half))
                    qs = src[o + 32 + 32 * h + 16 * half : o + 48 + 32 * h + 16 * half]
                    hm = src[o + 16 * half : o + 16 + 16 * half]
                    e = b * 256 + 128 * h + 32 * s + 16 * half
                    ds = dst[e : e + 16]
                    for i in range(qs.shape[0]):
                        q = np.uint8(((qs[i] >> (2 * s)) & 3) | (((hm[i] >> (4 * h + s)) & 1) << 2))
                        ds[i] = dl * (np.float32(q) - np.float32(4.0))


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
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o + 108, f16)
                for h in range(2):
                    for s in range(4):
                        d0 = d * np.float32(scale(row, o, 8 * h + 2 * s))
                        d1 = d * np.float32(scale(row, o, 8 * h + 2 * s + 1))
                        # bits by mask, not shift (see q5_k): (qs & kl) / 4^s = low bits, (hm & kh) * 4/kh = 4*hbit
                        kl = np.uint8(3 << (2 * s))
                        kh = np.uint8(1 << (4 * h + s))
                        fl = np.float32(1.0) / np.float32(1 << (2 * s))
                        fh = np.float32(4.0) / np.float32(kh)
                        qo = o + 32 + 32 * h
                        xo = b * 256 + 128 * h + 32 * s
                        for i in range(16):
                            q0 = fl * np.float32(np.uint8(row[qo + i] & kl)) + fh * np.float32(
                                np.uint8(row[o + i] & kh)
                            )
                            q1 = fl * np.float32(np.uint8(row[qo + 16 + i] & kl)) + fh * np.float32(
                                np.uint8(row[o + 16 + i] & kh)
                            )
                            acc[i] += d0 * (q0 - np.float32(4.0)) * x[xo + i]
                            acc[16 + i] += d1 * (q1 - np.float32(4.0)) * x[xo + 16 + i]
            out[r] = acc.sum()


@njit(**FAST_PAR)
def matmul(data, X, out, f16):
    """out = X W^T for a few rows of X (small-batch decode): each chunk of Q3_K rows is dequantized once
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
    """The 8 runs of 32 weights as (2 low bits, 4 where the high bit is clear) with 16 signed scales."""
    sc = scales_q3_k(e, e.at(blk, 96))
    nhm = e.b.xor(e.load(blk, V32I8), e.const(V32I8, 255))  # hmask inverted: 1 = subtract 4
    runs = []
    for h in range(2):
        q = e.load(e.at(blk, 32 + 32 * h), V32I8)
        for s in range(4):
            sub = e.b.shl(e.field(nhm, 4 * h + s, 1), e.const(V32I8, 2))
            runs.append(((e.field(q, 2 * s, 3), sub), e.scales16(sc, 8 * h + 2 * s)))
    return runs, e.f16(e.at(blk, 108)), None, None, None


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
    """out[t, r] = row r . activation row t, integer dots against Q8_K activations (ggml_vec_dot_q3_K_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.Q3_K, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_K)
