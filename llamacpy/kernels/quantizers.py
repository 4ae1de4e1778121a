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
from ._common import half_bits
from .kquantizers import _q2_k_row, _q3_k_row, _q4_k_row, _q5_k_row, _q6_k_row, legacy_weighted_row

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
    """The x of largest |x| (the first one on ties), found as ggml does from amax = max = 0.0: a block of
    -0.0 gives +0.0 (gguf-py's argmax gives -0.0, so its Q4_0/Q5_0 d is +0.0 where ggml's is -0.0)."""
    amax, mx = F0, F0
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


# kvalues_iq4nl (ggml-common.h): IQ4_NL's and IQ4_XS's code book
IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


@njit(**EXACT_INLINE)
def _best_index(x):
    """best_index_int8: the code-book entry nearest x (a binary search; ties to the lower one)."""
    v = IQ4_VALUES
    if x <= v[0]:
        return 0
    if x >= v[15]:
        return 15
    ml, mu = 0, 15
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if x < v[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if x - v[mu - 1] < v[mu] - x else mu


@njit(**EXACT_INLINE)
def _nearest_int(f):
    """nearest_int (ggml adds 1.5 * 2^23 and reads the mantissa): round half to even, for |f| < 2^22."""
    return np.int64(np.rint(f))


@njit(**EXACT_INLINE)
def _iq4_super_block(x, out, o, nsub, L, scales, ntry, qw, weight):
    """quantize_row_iq4_nl_impl: nsub blocks of 32 at x, written at out[o:] as {f16 d; qs} (nsub 1, IQ4_NL) or
    {f16 d; u16 scales_h; u8 scales_l[4]; qs}. `ntry` 7: the scale search of quantize_iq4_nl/xs
    (llama-quantize); -1: none, quantize_row_iq4_nl_ref (ggml-cpu's from_float). The weights are qw (this super
    block's importance) * sqrt(sigma2 + x^2), or x^2 when qw is empty."""
    v0 = IQ4_VALUES[0]
    max_scale, amax_scale = F0, F0
    sigma2 = F0
    if qw.shape[0] > 0:
        for j in range(32 * nsub):
            sigma2 += x[j] * x[j]
        sigma2 *= np.float32(2.0) / np.float32(32 * nsub)
    for ib in range(nsub):
        xb = x[32 * ib : 32 * ib + 32]
        for j in range(32):
            weight[j] = qw[32 * ib + j] * np.sqrt(sigma2 + xb[j] * xb[j]) if qw.shape[0] > 0 else xb[j] * xb[j]
        amax, mx = F0, F0
        for j in range(32):
            ax = abs(xb[j])
            if ax > amax:
                amax, mx = ax, xb[j]
        if amax < np.float32(1e-15):
            scales[ib] = F0
            continue
        d = -mx / v0 if ntry > 0 else mx / v0
        idv = np.float32(1.0) / d
        sumqx, sumq2 = F0, F0
        for j in range(32):
            lj = _best_index(idv * xb[j])
            L[32 * ib + j] = lj
            q, w = IQ4_VALUES[lj], weight[j]
            sumqx += w * q * xb[j]
            sumq2 += w * q * q
        d = sumqx / sumq2 if sumq2 > F0 else F0
        best = d * sumqx
        for itry in range(-ntry, ntry + 1):
            idv = np.float32(itry - 127) / mx  # (itry + values[0]) / max
            sumqx, sumq2 = F0, F0
            for j in range(32):
                q, w = IQ4_VALUES[_best_index(idv * xb[j])], weight[j]
                sumqx += w * q * xb[j]
                sumq2 += w * q * q
            if sumq2 > F0 and sumqx * sumqx > best * sumq2:
                d = sumqx / sumq2
                best = d * sumqx
        scales[ib] = d
        if abs(d) > amax_scale:
            amax_scale, max_scale = abs(d), d
    qo = o + 2
    if nsub > 1:
        d = -max_scale / np.float32(32.0)
        _put_half(out, o, d)
        idv = np.float32(1.0) / d if d != F0 else F0
        sh = 0
        for ib in range(nsub):
            lv = max(-32, min(31, _nearest_int(idv * scales[ib])))
            dl = d * np.float32(lv)
            idl = np.float32(1.0) / dl if dl != F0 else F0
            for j in range(32):
                L[32 * ib + j] = _best_index(idl * x[32 * ib + j])
            lv += 32
            if ib % 2 == 0:
                out[o + 4 + ib // 2] = lv & 15
            else:
                out[o + 4 + ib // 2] |= (lv & 15) << 4
            sh |= (lv >> 4) << (2 * ib)
        out[o + 2] = sh & 0xFF
        out[o + 3] = sh >> 8
        qo = o + 8
    else:
        _put_half(out, o, scales[0])
        if ntry > 0:
            idv = np.float32(1.0) / scales[0] if scales[0] != F0 else F0
            for j in range(32):
                L[j] = _best_index(idv * x[j])
    for i in range(nsub):
        for j in range(16):
            out[qo + 16 * i + j] = L[32 * i + j] | (L[32 * i + 16 + j] << 4)


@njit(**EXACT_INLINE)
def _iq4_nl_row(x, out, ntry, qw):
    """IQ4_NL: each 32 weights -> {f16 d; u8 qs[16]} with codes of IQ4_VALUES (quantize_iq4_nl; ntry -1:
    quantize_row_iq4_nl_ref)."""
    L, scales, weight = np.zeros(32, np.int64), np.zeros(1, np.float32), np.zeros(32, np.float32)
    for b in range(x.shape[0] // 32):
        _iq4_super_block(x[32 * b : 32 * b + 32], out, 18 * b, 1, L, scales, ntry, qw[32 * b : 32 * b + 32], weight)


@njit(**EXACT_INLINE)
def _iq4_xs_row(x, out, qw):
    """IQ4_XS: each 256 weights -> {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]} (quantize_iq4_xs)."""
    L, scales, weight = np.zeros(256, np.int64), np.zeros(8, np.float32), np.zeros(32, np.float32)
    for b in range(x.shape[0] // 256):
        _iq4_super_block(x[256 * b : 256 * b + 256], out, 136 * b, 8, L, scales, 7, qw[256 * b : 256 * b + 256],
                         weight)


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


# GGML type -> its code in `quantize_rows`
QUANTIZERS = {
    GGMLType.F32: 0, GGMLType.F16: 1, GGMLType.BF16: 2, GGMLType.Q4_0: 3, GGMLType.Q4_1: 4, GGMLType.Q5_0: 5,
    GGMLType.Q5_1: 6, GGMLType.Q8_0: 7, GGMLType.IQ4_NL: 8, GGMLType.IQ4_XS: 9,
    GGMLType.Q2_K: 11, GGMLType.Q3_K: 12, GGMLType.Q4_K: 13, GGMLType.Q5_K: 14, GGMLType.Q6_K: 15,
}  # fmt: skip
NO_WEIGHTS = np.zeros(0, np.float32)


@njit(**EXACT_PAR)
def quantize_rows(code, x, out, qw):
    """Every row of x (f32[n_rows, n]) into out (u8[n_rows, row_bytes]) as the type of `code` (QUANTIZERS),
    weighted by the importance qw (f32[n], shared by the rows) where the type uses one; qw empty: none, as
    ggml_quantize_chunk without an imatrix.

    One kernel branching on a small integer, not one per type made by a factory: numba's disk cache misses
    closures in every new process (measured: 1.5 s of compiling per `llamacpy quantize ... Q8_0`, 8 s for IQ4_NL).
    """
    weighted = qw.shape[0] > 0
    for r in prange(x.shape[0]):
        if weighted and 3 <= code <= 6:
            legacy_weighted_row(x[r], out[r], qw, code - 3)
        elif code == 0:
            _f32_row(x[r], out[r])
        elif code == 1:
            _f16_row(x[r], out[r])
        elif code == 2:
            _bf16_row(x[r], out[r])
        elif code == 3:
            _q4_0_row(x[r], out[r])
        elif code == 4:
            _q4_1_row(x[r], out[r])
        elif code == 5:
            _q5_0_row(x[r], out[r])
        elif code == 6:
            _q5_1_row(x[r], out[r])
        elif code == 7:
            _q8_0_row(x[r], out[r])
        elif code == 8:
            _iq4_nl_row(x[r], out[r], 7, qw)
        elif code == 9:
            _iq4_xs_row(x[r], out[r], qw)
        elif code == 10:
            _iq4_nl_row(x[r], out[r], -1, qw)
        elif code == 11:
            _q2_k_row(x[r], out[r], qw)
        elif code == 12:
            _q3_k_row(x[r], out[r], qw)
        elif code == 13:
            _q4_k_row(x[r], out[r], qw)
        elif code == 14:
            _q5_k_row(x[r], out[r], qw)
        else:
            _q6_k_row(x[r], out[r], qw)


def row_bytes(qtype: GGMLType, n: int) -> int:
    """Bytes of one row of n weights (n a multiple of the block size)."""
    block_elems, block_bytes = BLOCK_LAYOUT[qtype]
    return n // block_elems * block_bytes


# ggml-cpu's `from_float` (what ggml_set_rows writes into a KV cache) where it is not the quantizer above: IQ4_NL
# without the scale search (quantize_row_iq4_nl_ref)
FROM_FLOAT = {**QUANTIZERS, GGMLType.IQ4_NL: 10}


def quantize(x: np.ndarray, qtype: GGMLType, from_float: bool = False,
             imatrix: np.ndarray | None = None) -> np.ndarray:
    """f32 rows (any shape, last axis = row) -> u8[..., row_bytes] of `qtype` blocks, as gguf.quants.quantize
    lays them out (`from_float`: as ggml-cpu's from_float of the type writes them, see FROM_FLOAT; `imatrix`:
    one importance per column, as ggml_quantize_chunk's quant_weights)."""
    qtype = GGMLType(qtype)
    if qtype not in QUANTIZERS:
        raise NotImplementedError(f"no quantizer for {qtype.name}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    if n % BLOCK_LAYOUT[qtype][0]:
        raise ValueError(f"rows of {n} are not a multiple of the {qtype.name} block size {BLOCK_LAYOUT[qtype][0]}")
    rows = x.reshape(-1, n)
    out = np.empty((rows.shape[0], row_bytes(qtype, n)), np.uint8)
    qw = NO_WEIGHTS if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    if qw.size not in (0, n):
        raise ValueError(f"an importance matrix of {qw.size} values for rows of {n}")
    quantize_rows((FROM_FLOAT if from_float else QUANTIZERS)[qtype], rows, out, qw)
    return out.reshape(*x.shape[:-1], out.shape[-1])
