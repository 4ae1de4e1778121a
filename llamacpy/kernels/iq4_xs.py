"""IQ4_XS: super-blocks of 256 weights in 136 bytes = {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}.
Eight sub-blocks of 32 with a 6-bit scale ls (low 4 bits in scales_l, high 2 in scales_h); sub-block i
takes qs[16i : 16i + 16] (low nibbles, then high) through IQ4_NL's code book: w = d*(ls - 32) * KVALUES[q]."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_INLINE, EXACT_PAR, FAST, FAST_PAR, f16_at, prefetch_row, small_gemm
from .iq4_nl import KVALUES, KVALUES_LIST
from .registry import register
from .simd import I8, I16, I32, V16I8, Signed, kquant_body, row_dot

BLOCK_BYTES = 136


@njit(**EXACT)
def sub_scale(src, o, i):
    """The 6-bit scale of sub-block i minus 32, for the super-block at byte o."""
    lo = (np.int64(src[o + 4 + i // 2]) >> (4 * (i % 2))) & 15
    sh = np.int64(src[o + 2]) | (np.int64(src[o + 3]) << 8)
    return (lo | (((sh >> (2 * i)) & 3) << 4)) - 32


@njit(**EXACT_INLINE)
def dequant_row(src, dst, f16):
    """One row of IQ4_XS super-blocks -> f32, as gguf-py computes it: (d * (ls - 32)) * kvalues[q]."""
    for b in range(src.shape[0] // BLOCK_BYTES):
        o = b * BLOCK_BYTES
        d = f16_at(src, o, f16)
        for i in range(8):
            dl = d * np.float32(sub_scale(src, o, i))
            qs = src[o + 8 + 16 * i : o + 24 + 16 * i]
            lo = dst[b * 256 + 32 * i : b * 256 + 32 * i + 16]
            hi = dst[b * 256 + 32 * i + 16 : b * 256 + 32 * i + 32]
            for j in range(qs.shape[0]):
                lo[j] = dl * KVALUES[qs[j] & 15]
                hi[j] = dl * KVALUES[qs[j] >> 4]


@njit(**EXACT_PAR)
def dequant_rows(data, ids, out, f16):
    """IQ4_XS rows ids -> out (f32)."""
    for i in prange(ids.shape[0]):
        dequant_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def matvec(data, x, out, f16):
    """out = W x fused on IQ4_XS super-blocks: 32 f32 lanes per row, one table lookup per weight."""
    n, nb = data.shape[0], x.shape[0] // 256
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r]
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                o = b * BLOCK_BYTES
                d = f16_at(row, o, f16)
                for i in range(8):
                    dl = d * np.float32(sub_scale(row, o, i))
                    xo = b * 256 + 32 * i
                    for j in range(16):
                        q = row[o + 8 + 16 * i + j]
                        acc[j] += dl * KVALUES[q & 15] * x[xo + j]
                        acc[16 + j] += dl * KVALUES[q >> 4] * x[xo + 16 + j]
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


def _runs(e, blk):
    """The 8 runs of 32 looked-up weights (s8) with their scales ls - 32, as ggml_vec_dot_iq4_xs_q8_K."""
    b = e.b
    sh = b.zext(e.load(e.at(blk, 2), I16), I32)
    runs = []
    for i in range(8):
        sl = b.zext(e.load(e.at(blk, 4 + i // 2), I8), I32)
        lo = b.and_(b.lshr(sl, I32(4 * (i % 2))), I32(15))
        hi = b.shl(b.and_(b.lshr(sh, I32(2 * i)), I32(3)), I32(4))
        ls = b.trunc(b.sub(b.or_(lo, hi), I32(32)), I16)
        w = e.lut16(e.nibbles(e.load(e.at(blk, 8 + 16 * i), V16I8)), KVALUES_LIST)
        runs.append((Signed(w), e.splat(ls, 16)))
    return runs, e.f16(blk), None, None, None


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
    """out[t, r] = row r . activation row t against Q8_K activations (ggml_vec_dot_iq4_xs_q8_K)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        rows(data, xq, xd, xs, out, c * CHUNK, min(n, c * CHUNK + CHUNK))


register(GGMLType.IQ4_XS, dequant_rows, matvec, matmul, vec_dot, GGMLType.Q8_K)
