"""F32, F16 and BF16 weights: one element per "block" (4 or 2 little-endian bytes).

F32 rows are used in place through a float32 view and multiplied in ggml's own float order (the F32 routers of
every mixture of experts amplify its last bits into tenths of a nat; BLAS's order follows the CPU model OpenBLAS
detects): ggml_vec_dot_f32 for one activation row, llamafile's tinyBLAS for two or more (ggml_compute_forward_mul_mat
with GGML_USE_LLAMAFILE). F16 converts through the exact 65536-entry table; BF16 is the high half of a float32
(bits << 16), as in ggml.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import GGMLType
from ._common import CHUNK, EXACT, EXACT_PAR, FAST_PAR, dot, fma32, half_to_float, prefetch_row, small_gemm
from .registry import register
from .simd import HAS_AVX512

# ggml's F32 vector width on this host: GGML_F32_EPR (ggml_vec_dot_f32) and tinyBLAS's KN (16 AVX-512, 8 AVX2)
F32_LANES = 16 if HAS_AVX512 else 8
EXACT_F32_BATCH = 64  # rows of X up to which any F32 matrix is multiplied in ggml's order (as VEC_DOT_BATCH)
EXACT_F32_ROWS = 256  # weights of at most this many rows (every expert router) take ggml's order at any batch


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


@njit(**EXACT, inline="always")
def _halving_sum(acc, width):
    """The lanes of acc[:width] summed by halving: _mm512_reduce_add_ps, and tinyBLAS's hsum of __m256."""
    while width > 1:
        width //= 2
        for m in range(width):
            acc[m] += acc[m + width]
    return acc[0]


@njit(**EXACT)
def vec_dot_f32(x, y, lanes):
    """ggml_vec_dot_f32 on x86: four accumulators of `lanes` lanes take FMAs over the largest multiple of
    4 * lanes elements and are added pairwise (GGML_F32_VEC_REDUCE), then across lanes (AVX-512: by halving;
    AVX2: the two 128-bit halves, then two hadds); the leftover elements are added one FMA at a time (GCC
    contracts `sumf += x[i]*y[i]` in gnu++17)."""
    n = x.shape[0]
    step = 4 * lanes
    n_main = n - n % step
    acc = np.zeros(step, np.float32)  # accumulator j, lane m at j * lanes + m
    for i in range(0, n_main, step):
        for q in range(step):
            acc[q] = fma32(x[i + q], y[i + q], acc[q])
    for m in range(2 * lanes):
        acc[m] += acc[2 * lanes + m]
    for m in range(lanes):
        acc[m] += acc[lanes + m]
    if lanes == 16:
        s = _halving_sum(acc, 16)
    else:
        s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
    for i in range(n_main, n):
        s = fma32(x[i], y[i], s)
    return s


@njit(**EXACT_PAR)
def f32_matvec(data, x, out, f16):
    """out = W x for F32 rows, each a ggml_vec_dot_f32."""
    n = data.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(n, c * CHUNK + CHUNK)):
            out[r] = vec_dot_f32(data[r].view(np.float32), x, F32_LANES)


@njit(**EXACT, inline="always")
def _tinyblas_dot(w, x, acc):
    """One output as tinyBLAS sums it (see f32_tinyblas)."""
    acc[:] = 0.0
    for base in range(0, w.shape[0], F32_LANES):
        for m in range(F32_LANES):
            acc[m] = fma32(w[base + m], x[base + m], acc[m])
    return _halving_sum(acc, F32_LANES)


@njit(**EXACT_PAR)
def f32_tinyblas(W, X, out):
    """out = X W^T as llamafile's tinyBLAS sums an F32 product of two rows or more (K a multiple of F32_LANES):
    one accumulator of F32_LANES lanes per output, an FMA per F32_LANES elements (madd), the lanes summed by
    halving (hsum). W (N, K), X (T, K) f32. Four inputs at a time share each weight load (four independent
    FMA chains); numba's code still runs ~12x below OpenBLAS on big matrices (measured, 1536 x 576, T = 512)."""
    N = W.shape[0]
    T = X.shape[0]
    L = F32_LANES
    for c in prange((N + CHUNK - 1) // CHUNK):
        acc = np.empty(4 * L, np.float32)
        for r in range(c * CHUNK, min(N, c * CHUNK + CHUNK)):
            w = W[r]
            t = 0
            while t + 4 <= T:
                x0, x1, x2, x3 = X[t], X[t + 1], X[t + 2], X[t + 3]
                acc[:] = 0.0
                for base in range(0, w.shape[0], L):
                    for m in range(L):
                        wv = w[base + m]
                        acc[m] = fma32(wv, x0[base + m], acc[m])
                        acc[L + m] = fma32(wv, x1[base + m], acc[L + m])
                        acc[2 * L + m] = fma32(wv, x2[base + m], acc[2 * L + m])
                        acc[3 * L + m] = fma32(wv, x3[base + m], acc[3 * L + m])
                for j in range(4):
                    out[t + j, r] = _halving_sum(acc[j * L:(j + 1) * L], L)
                t += 4
            while t < T:
                out[t, r] = _tinyblas_dot(w, X[t], acc)
                t += 1


@njit(**EXACT_PAR)
def f32_vec_dot_rows(W, X, out, lanes):
    """out = X W^T, every output a ggml_vec_dot_f32 (what ggml does where tinyBLAS declines: K not a multiple
    of the vector width)."""
    N = W.shape[0]
    T = X.shape[0]
    for c in prange((N + CHUNK - 1) // CHUNK):
        for r in range(c * CHUNK, min(N, c * CHUNK + CHUNK)):
            for t in range(T):
                out[t, r] = vec_dot_f32(W[r], X[t], lanes)


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
    """out = X W^T in ggml's order for X's row count (one row: vec_dot; more: tinyBLAS where K allows), up to
    EXACT_F32_BATCH rows or for matrices of at most EXACT_F32_ROWS rows (routers, shared-expert gates); BLAS
    beyond, as the quantized types go to BLAS above their own vec_dot batch (same values up to the last bits)."""
    W = data.view(np.float32)
    T = X.shape[0]
    if T > EXACT_F32_BATCH and W.shape[0] > EXACT_F32_ROWS:
        np.dot(X, W.T, out=out)
    elif T == 1:
        f32_matvec(data, X[0], out[0], f16)
    elif W.shape[1] % F32_LANES == 0:
        f32_tinyblas(W, X, out)
    else:
        f32_vec_dot_rows(W, X, out, F32_LANES)


register(GGMLType.F32, f32_dequant_rows, f32_matvec, _f32_matmul)
register(GGMLType.F16, f16_dequant_rows, f16_matvec, f16_matmul)
register(GGMLType.BF16, bf16_dequant_rows, bf16_matvec, bf16_matmul)
