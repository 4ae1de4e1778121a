"""F32, F16 and BF16 weights: one element per "block" (4 or 2 little-endian bytes).

F32 rows are used in place through a float32 view (BLAS does the products); F16 converts through the
exact 65536-entry table; BF16 is the high half of a float32 (bits << 16), as in ggml.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, dot, half_to_float, prefetch_row, small_gemm
from .registry import register


@njit(**EXACT)
def _f32_row(src, dst, f16):
    """F32 row: 4 little-endian bytes per weight."""
    dst[:] = src.view(np.float32)


@njit(**EXACT)
def _f16_row(src, dst, f16):
    """F16 row: 2 little-endian bytes per weight, IEEE half."""
    for j in range(dst.shape[0]):
        dst[j] = f16[np.int64(src[2 * j]) | (np.int64(src[2 * j + 1]) << 8)]


@njit(**EXACT)
def _bf16_row(src, dst, f16):
    """BF16 row: 2 little-endian bytes per weight, the high 16 bits of a float32."""
    bits = dst.view(np.uint32)
    for j in range(dst.shape[0]):
        bits[j] = (np.uint32(src[2 * j]) << np.uint32(16)) | (np.uint32(src[2 * j + 1]) << np.uint32(24))


@njit(**EXACT_PAR)
def f32_dequant_rows(data, ids, out, f16):
    """F32 rows ids -> out."""
    for i in prange(ids.shape[0]):
        _f32_row(data[ids[i]], out[i], f16)


@njit(**EXACT_PAR)
def f16_dequant_rows(data, ids, out, f16):
    """F16 rows ids -> out."""
    for i in prange(ids.shape[0]):
        _f16_row(data[ids[i]], out[i], f16)


@njit(**EXACT_PAR)
def bf16_dequant_rows(data, ids, out, f16):
    """BF16 rows ids -> out."""
    for i in prange(ids.shape[0]):
        _bf16_row(data[ids[i]], out[i], f16)


@njit(**FAST_PAR)
def f32_matvec(data, x, out, f16):
    """out = W x for F32 rows (WeightMatrix normally calls BLAS instead)."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            out[r] = dot(data[r].view(np.float32), x)


@njit(**FAST_PAR)
def f16_matvec(data, x, out, f16):
    """out = W x for F16 rows, converted with vcvtph2ps on the fly: 32 f32 lanes per row."""
    n, nb = data.shape[0], x.shape[0] // 32
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            prefetch_row(data, r)
            row = data[r].view(np.uint16)
            acc = np.zeros(32, np.float32)
            for b in range(nb):
                for j in range(32):
                    acc[j] += half_to_float(row[b * 32 + j]) * x[b * 32 + j]
            s = acc.sum()
            for j in range(nb * 32, x.shape[0]):
                s += half_to_float(row[j]) * x[j]
            out[r] = s


@njit(**FAST_PAR)
def bf16_matvec(data, x, out, f16):
    """out = W x for BF16 rows."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        buf = np.empty(x.shape[0], np.float32)
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            _bf16_row(data[r], buf, f16)
            out[r] = dot(buf, x)


@njit(**FAST_PAR)
def f16_matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, F16 rows converted a chunk at a time."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(n, r0 + CHUNK)
        buf = np.empty((r1 - r0, X.shape[1]), np.float32)
        for r in range(r0, r1):
            _f16_row(data[r], buf[r - r0], f16)
        small_gemm(buf, X, out, r0)


@njit(**FAST_PAR)
def bf16_matmul(data, X, out, f16):
    """out = X W^T for a few rows of X, BF16 rows converted a chunk at a time."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(n, r0 + CHUNK)
        buf = np.empty((r1 - r0, X.shape[1]), np.float32)
        for r in range(r0, r1):
            _bf16_row(data[r], buf[r - r0], f16)
        small_gemm(buf, X, out, r0)


def _f32_matmul(data, X, out, f16):
    np.dot(X, data.view(np.float32).T, out=out)


register(GGMLType.F32, f32_dequant_rows, f32_matvec, _f32_matmul)
register(GGMLType.F16, f16_dequant_rows, f16_matvec, f16_matmul)
register(GGMLType.BF16, bf16_dequant_rows, bf16_matvec, bf16_matmul)
