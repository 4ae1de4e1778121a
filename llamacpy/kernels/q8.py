"""Activations quantized to 8 bits the way ggml's CPU backend does before every quantized matmul.

ggml does not multiply quantized weights by f32 activations: it quantizes each activation row to the
weight type's "vec_dot type" and takes integer dot products (`simd.py`). The three formats, exactly as
ggml's x86 quantizers round (AVX path for Q8_0/Q8_1, reference path for Q8_K):

- Q8_0 (for Q4_0, Q5_0, Q8_0): per 32 values, d = amax/127 stored as f16, q = round_half_even(x*127/amax).
  `s` here: the int32 sum of each block's q (the Q4_0/Q5_0 kernels subtract 8 or 16 times it).
- Q8_1 (for Q4_1, Q5_1): as Q8_0, plus s = f16(d * sum(q)) (ggml multiplies it by each weight block's min).
- Q8_K (for the K-quants): per 256 values, max = the value of largest magnitude, iscale = -127/max,
  q = min(127, round_half_even(iscale*x)), d = 1/iscale (f32); `s`: int16 sums of q per 16 values.

`QuantizedRows.f32()` gives back the values the integer kernels see (d * q), for the BLAS path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..gguf import GGMLType
from ._common import round_to_half
from .threads import run_parallel

# Rows above which quantizing is split over the kernel threads (a fork-join costs more than a few rows'
# work), in blocks of this many rows. Python threads, not numba's pool: many rows means the BLAS path
# follows, and a numba pool left spinning would take a core from the BLAS threads (kernels/threads.py).
PARALLEL_ROWS = 8
ROW_BLOCK = 64


@njit(cache=True, nogil=True, inline="always")
def _q8_0_block(x, q, o):
    """Quantize x[o:o+32] into q[o:o+32]; returns (d unrounded, sum of q)."""
    amax = np.float32(0.0)
    for j in range(32):
        amax = max(amax, abs(x[o + j]))
    inv = np.float32(127.0) / amax if amax != 0 else np.float32(0.0)
    total = 0
    for j in range(32):
        v = np.int32(np.rint(x[o + j] * inv))
        q[o + j] = v
        total += v
    return amax / np.float32(127.0), total


@njit(cache=True, nogil=True, inline="always")
def _q8_0_row(x, q, d, s):
    for b in range(x.shape[0] // 32):
        db, total = _q8_0_block(x, q, b * 32)
        d[b] = round_to_half(db)
        s[b] = total


@njit(cache=True, nogil=True, inline="always")
def _q8_1_row(x, q, d, s):
    for b in range(x.shape[0] // 32):
        db, total = _q8_0_block(x, q, b * 32)
        d[b] = round_to_half(db)
        s[b] = round_to_half(db * np.float32(total))


@njit(cache=True, nogil=True, inline="always")
def _q8_k_row(x, q, d, s):
    for b in range(x.shape[0] // 256):
        amax = np.float32(0.0)
        vmax = np.float32(0.0)
        for j in range(256):
            a = abs(x[b * 256 + j])
            if a > amax:
                amax = a
                vmax = x[b * 256 + j]
        if amax == 0:
            d[b] = 0.0
            q[b * 256 : b * 256 + 256] = 0
            s[b * 16 : b * 16 + 16] = 0
            continue
        iscale = np.float32(-127.0) / vmax
        for j in range(256):
            q[b * 256 + j] = np.int32(min(np.float32(127.0), np.float32(np.rint(iscale * x[b * 256 + j]))))
        for g in range(16):
            total = 0
            for j in range(16):
                total += np.int32(q[b * 256 + g * 16 + j])
            s[b * 16 + g] = total
        d[b] = np.float32(1.0) / iscale


@njit(cache=True, nogil=True)
def _quantize_q8_0(X, q, d, s):
    for t in range(X.shape[0]):
        _q8_0_row(X[t], q[t], d[t], s[t])


@njit(cache=True, nogil=True)
def _quantize_q8_1(X, q, d, s):
    for t in range(X.shape[0]):
        _q8_1_row(X[t], q[t], d[t], s[t])


@njit(cache=True, nogil=True)
def _quantize_q8_k(X, q, d, s):
    for t in range(X.shape[0]):
        _q8_k_row(X[t], q[t], d[t], s[t])


@njit(cache=True, nogil=True)
def _to_f32(q, d, bs, out):
    """out = d * q per block of bs values (exactly the f32 product ggml's integer path represents)."""
    for t in range(q.shape[0]):
        for b in range(d.shape[1]):
            db = d[t, b]
            for j in range(bs):
                out[t, b * bs + j] = db * np.float32(q[t, b * bs + j])


@dataclass
class QuantizedRows:
    """T activation rows in a vec_dot format: q int8 (T, n), d f32 per block, s per block (see above)."""

    type: GGMLType
    q: np.ndarray
    d: np.ndarray
    s: np.ndarray

    @property
    def block(self) -> int:
        return 256 if self.type == GGMLType.Q8_K else 32

    def f32(self) -> np.ndarray:
        """The quantized values as f32 (T, n): what the integer kernels multiply the weights by."""
        out = np.empty(self.q.shape, np.float32)
        _by_row_blocks(lambda a, b: _to_f32(self.q[a:b], self.d[a:b], self.block, out[a:b]), out.shape[0])
        return out

    def q8_1_correction(self) -> np.ndarray:
        """(T, n/32): ggml's Q8_1 `s` minus the f32 sum of the block's values, the difference a weight
        block's min multiplies when the product is taken in f32 (BLAS path) instead of by the kernel."""
        sums = self.q.reshape(self.q.shape[0], -1, 32).sum(axis=2, dtype=np.int32).astype(np.float32)
        return self.s - self.d * sums


def quantize(X: np.ndarray, vec_dot_type: GGMLType) -> QuantizedRows:
    """X f32 (T, n) -> its rows quantized to Q8_0, Q8_1 or Q8_K (n a multiple of the block size)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    T, n = X.shape
    q = np.empty((T, n), np.int8)
    if vec_dot_type == GGMLType.Q8_K:
        d = np.empty((T, n // 256), np.float32)
        s = np.empty((T, n // 16), np.int16)
        kernel = _quantize_q8_k
    elif vec_dot_type == GGMLType.Q8_0:
        d = np.empty((T, n // 32), np.float32)
        s = np.empty((T, n // 32), np.int32)
        kernel = _quantize_q8_0
    elif vec_dot_type == GGMLType.Q8_1:
        d = np.empty((T, n // 32), np.float32)
        s = np.empty((T, n // 32), np.float32)
        kernel = _quantize_q8_1
    else:
        raise ValueError(f"no activation quantizer for {GGMLType(vec_dot_type).name}")
    _by_row_blocks(lambda a, b: kernel(X[a:b], q[a:b], d[a:b], s[a:b]), T)
    return QuantizedRows(GGMLType(vec_dot_type), q, d, s)


def _by_row_blocks(work, T: int) -> None:
    """work(a, b) over rows [a, b): directly for a few rows, else blocks on the kernel threads."""
    if T <= PARALLEL_ROWS:
        work(0, T)
    else:
        run_parallel(work, [(a, min(T, a + ROW_BLOCK)) for a in range(0, T, ROW_BLOCK)])


class Activations:
    """f32 activation rows X (T, n) and their quantized forms, each made once on first use: the matrices
    that read the same rows (q/k/v, gate/up) share one quantization."""

    def __init__(self, x: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self._q: dict[GGMLType, QuantizedRows] = {}

    def quantized(self, vec_dot_type: GGMLType) -> QuantizedRows:
        if vec_dot_type not in self._q:
            self._q[vec_dot_type] = quantize(self.x, vec_dot_type)
        return self._q[vec_dot_type]
