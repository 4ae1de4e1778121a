"""f32 rows -> GGML blocks: ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c), in numba.

Every kernel equals gguf-py's `gguf.quants.quantize` bit for bit (tests/unit/test_quantize.py checks it on
real tensors). They are compiled without fastmath: the C code's float32 operations are reproduced one by
one (no FMA contraction, no reordering), and float32 constants keep numba from widening to float64.
Rows are spread over numba's threads (prange); each row is independent, so the thread count never changes
the bytes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gguf import BLOCK_LAYOUT, GGMLType
from ..kernels._common import half_bits

EXACT_INLINE = {"cache": True, "nogil": True, "inline": "always"}
EXACT_PAR = {"cache": True, "nogil": True, "parallel": True}

F0, HALF = np.float32(0.0), np.float32(0.5)


@njit(**EXACT_INLINE)
def _put_half(out, o, v):
    """Store float32 v at out[o:o+2] as a little-endian IEEE half (round to nearest even: GGML_FP32_TO_FP16)."""
    bits = half_bits(v)
    out[o] = bits & 0xFF
    out[o + 1] = bits >> 8


@njit(**EXACT_INLINE)
def _roundf(v):
    """C's roundf for float32: to the nearest integer, halves away from zero (v - trunc(v) is exact)."""
    t = np.trunc(v)
    if v - t >= HALF:
        t += np.float32(1.0)
    elif t - v >= HALF:
        t -= np.float32(1.0)
    return t


@njit(**EXACT_INLINE)
def _absmax_signed(x):
    """(max |x|, the x holding it): the first one on ties, as gguf-py's argmax (ggml's loop starts at 0.0
    instead, which differs only for a block of zeros starting with -0.0)."""
    amax, mx = np.float32(-1.0), F0
    for j in range(x.shape[0]):
        a = abs(x[j])
        if amax < a:
            amax, mx = a, x[j]
    return mx


@njit(**EXACT_INLINE)
def _minmax(x):
    lo, hi = np.float32(np.inf), np.float32(-np.inf)
    for j in range(x.shape[0]):
        v = x[j]
        # ggml's comparisons, kept as written: min()/max() may treat -0.0 and NaN differently
        if v < lo:  # noqa: PLR1730
            lo = v
        if v > hi:  # noqa: PLR1730
            hi = v
    return lo, hi


@njit(**EXACT_INLINE)
def _q8_0_row(x, out):
    """Q8_0: 32 weights -> {f16 d; i8 qs[32]}, d = max|x| / 127, q = roundf(x / d)."""
    for b in range(x.shape[0] // 32):
        blk, o = x[b * 32 : b * 32 + 32], b * 34
        amax = F0
        for j in range(32):
            a = abs(blk[j])
            amax = amax if amax > a else a  # noqa: FURB136 - ggml's MAX(amax, fabsf(v)), operand order kept
        d = amax / np.float32(127.0)
        inv = np.float32(1.0) / d if d != F0 else F0
        _put_half(out, o, d)
        for j in range(32):
            out[o + 2 + j] = np.int64(_roundf(blk[j] * inv)) & 0xFF


@njit(**EXACT_INLINE)
def _q4_0_row(x, out):
    """Q4_0: 32 weights -> {f16 d; u8 qs[16]}, d = (signed max-|x| value) / -8, q = min(15, trunc(x/d + 8.5));
    weight j in the low nibble of byte j, weight j + 16 in its high nibble."""
    for b in range(x.shape[0] // 32):
        blk, o = x[b * 32 : b * 32 + 32], b * 18
        d = _absmax_signed(blk) / np.float32(-8.0)
        inv = np.float32(1.0) / d if d != F0 else F0
        _put_half(out, o, d)
        for j in range(16):
            q0 = min(15, max(0, np.int64(blk[j] * inv + np.float32(8.5))))
            q1 = min(15, max(0, np.int64(blk[j + 16] * inv + np.float32(8.5))))
            out[o + 2 + j] = q0 | (q1 << 4)


@njit(**EXACT_INLINE)
def _q4_1_row(x, out):
    """Q4_1: 32 weights -> {f16 d; f16 m; u8 qs[16]}, m = min, d = (max - min) / 15, q = trunc((x-m)/d + .5)."""
    for b in range(x.shape[0] // 32):
        blk, o = x[b * 32 : b * 32 + 32], b * 20
        lo, hi = _minmax(blk)
        d = (hi - lo) / np.float32(15.0)
        inv = np.float32(1.0) / d if d != F0 else F0
        _put_half(out, o, d)
        _put_half(out, o + 2, lo)
        for j in range(16):
            q0 = min(15, max(0, np.int64((blk[j] - lo) * inv + HALF)))
            q1 = min(15, max(0, np.int64((blk[j + 16] - lo) * inv + HALF)))
            out[o + 4 + j] = q0 | (q1 << 4)


@njit(**EXACT_INLINE)
def _q5_0_row(x, out):
    """Q5_0: 32 weights -> {f16 d; u32 qh; u8 qs[16]}, d = (signed max-|x| value) / -16,
    q = min(31, trunc(x/d + 16.5)); low nibbles as Q4_0, bit 4 of weight j in bit j of qh."""
    for b in range(x.shape[0] // 32):
        blk, o = x[b * 32 : b * 32 + 32], b * 22
        d = _absmax_signed(blk) / np.float32(-16.0)
        inv = np.float32(1.0) / d if d != F0 else F0
        _put_half(out, o, d)
        qh = 0
        for j in range(16):
            q0 = min(31, max(0, np.int64(blk[j] * inv + np.float32(16.5))))
            q1 = min(31, max(0, np.int64(blk[j + 16] * inv + np.float32(16.5))))
            out[o + 6 + j] = (q0 & 15) | ((q1 & 15) << 4)
            qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16))
        for k in range(4):
            out[o + 2 + k] = (qh >> (8 * k)) & 0xFF


@njit(**EXACT_INLINE)
def _q5_1_row(x, out):
    """Q5_1: 32 weights -> {f16 d; f16 m; u32 qh; u8 qs[16]}, m = min, d = (max - min) / 31."""
    for b in range(x.shape[0] // 32):
        blk, o = x[b * 32 : b * 32 + 32], b * 24
        lo, hi = _minmax(blk)
        d = (hi - lo) / np.float32(31.0)
        inv = np.float32(1.0) / d if d != F0 else F0
        _put_half(out, o, d)
        _put_half(out, o + 2, lo)
        qh = 0
        for j in range(16):
            q0 = min(31, max(0, np.int64((blk[j] - lo) * inv + HALF)))
            q1 = min(31, max(0, np.int64((blk[j + 16] - lo) * inv + HALF)))
            out[o + 8 + j] = (q0 & 15) | ((q1 & 15) << 4)
            qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16))
        for k in range(4):
            out[o + 4 + k] = (qh >> (8 * k)) & 0xFF


@njit(**EXACT_INLINE)
def _f16_row(x, out):
    """F16: IEEE half, round to nearest even (ggml_fp32_to_fp16_row)."""
    for j in range(x.shape[0]):
        _put_half(out, 2 * j, x[j])


@njit(**EXACT_INLINE)
def _bf16_row(x, out):
    """BF16: the high half of the float32, round to nearest even, NaNs quieted (ggml_compute_fp32_to_bf16)."""
    bits = x.view(np.uint32)
    for j in range(x.shape[0]):
        u = np.uint64(bits[j])
        if (u & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000):
            h = (u >> np.uint64(16)) | np.uint64(64)
        else:
            h = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
        out[2 * j] = h & np.uint64(0xFF)
        out[2 * j + 1] = (h >> np.uint64(8)) & np.uint64(0xFF)


@njit(**EXACT_INLINE)
def _f32_row(x, out):
    out.view(np.float32)[:] = x


def _rows_kernel(row_fn):
    """A parallel kernel applying `row_fn(x[r], out[r])` to every row."""

    @njit(**EXACT_PAR)
    def rows(x, out):
        for r in prange(x.shape[0]):
            row_fn(x[r], out[r])

    return rows


q8_0_rows = _rows_kernel(_q8_0_row)
q4_0_rows = _rows_kernel(_q4_0_row)
q4_1_rows = _rows_kernel(_q4_1_row)
q5_0_rows = _rows_kernel(_q5_0_row)
q5_1_rows = _rows_kernel(_q5_1_row)
f16_rows = _rows_kernel(_f16_row)
bf16_rows = _rows_kernel(_bf16_row)
f32_rows = _rows_kernel(_f32_row)

# GGML type -> parallel kernel (x: f32[n_rows, n], out: u8[n_rows, row_bytes])
QUANTIZERS = {
    GGMLType.F32: f32_rows,
    GGMLType.F16: f16_rows,
    GGMLType.BF16: bf16_rows,
    GGMLType.Q4_0: q4_0_rows,
    GGMLType.Q4_1: q4_1_rows,
    GGMLType.Q5_0: q5_0_rows,
    GGMLType.Q5_1: q5_1_rows,
    GGMLType.Q8_0: q8_0_rows,
}


def row_bytes(qtype: GGMLType, n: int) -> int:
    """Bytes of one row of n weights (n a multiple of the block size)."""
    block_elems, block_bytes = BLOCK_LAYOUT[qtype]
    return n // block_elems * block_bytes


def quantize(x: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """f32 rows (any shape, last axis = row) -> u8[..., row_bytes] of `qtype` blocks, as gguf.quants.quantize
    lays them out."""
    qtype = GGMLType(qtype)
    if qtype not in QUANTIZERS:
        raise NotImplementedError(f"no quantizer for {qtype.name}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    if n % BLOCK_LAYOUT[qtype][0]:
        raise ValueError(f"rows of {n} are not a multiple of the {qtype.name} block size {BLOCK_LAYOUT[qtype][0]}")
    rows = x.reshape(-1, n)
    out = np.empty((rows.shape[0], row_bytes(qtype, n)), np.uint8)
    QUANTIZERS[qtype](rows, out)
    return out.reshape(*x.shape[:-1], out.shape[-1])
