"""f32 rows -> K-quant blocks (Q2_K ... Q6_K), and the importance-weighted quantizers: ggml-quants.c in numba.

llama-quantize calls ggml_quantize_chunk, which runs ggml-base's C code, compiled for baseline x86-64 (SSE2,
no FMA, no reordering). So every float32 operation below is the C's, one by one, in its order: constants are
float32, integers are turned into float32 where C converts them, and values C stores into uint8/int8 are
masked as C truncates them. tests/unit/test_kquantizers.py checks the bytes against recordings of ggml's own
functions (scripts/record_ggml_quantize.py).

Each `*_row(x, out, qw)` quantizes one row; `qw` is the row's importance weights (an imatrix column, one per
weight) or empty for none. Without weights the K-quants run quantize_row_*_ref; with them quantize_row_*_impl,
as quantize_q*_K do. The legacy types use their *_impl only with weights (the reference rows live in
quantizers.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import half_bits, round_to_half

EXACT_INLINE = {"cache": True, "nogil": True, "inline": "always"}
EXACT = {"cache": True, "nogil": True}

F0, F1 = np.float32(0.0), np.float32(1.0)
EPS = np.float32(1e-15)  # GROUP_MAX_EPS
QK_K = 256


@njit(**EXACT_INLINE)
def _put_half(out, o, v):
    bits = half_bits(v)
    out[o] = bits & 0xFF
    out[o + 1] = bits >> 8


@njit(**EXACT_INLINE)
def nearest_int(f):
    """ggml's nearest_int (adds 1.5 * 2^23, reads the mantissa): round half to even for |f| < 2^22."""
    return np.int64(np.rint(f))


@njit(**EXACT)
def make_qx_quants(n, nmax, x, L, rmse_type, qw):
    """A symmetric scale for n values (L[i] = nmax + clamped level, in [0, 2 nmax)); rmse_type 1 searches 18
    nearby scales for the least weighted error (weights qw, or x^2 when qw is empty)."""
    mx, amax = F0, F0
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax, mx = ax, x[i]
    if amax < EPS:
        for i in range(n):
            L[i] = 0
        return F0
    iscale = np.float32(-nmax) / mx
    if rmse_type == 0:
        for i in range(n):
            L[i] = nmax + max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
        return F1 / iscale
    has_w = qw.shape[0] > 0
    sumlx, suml2 = F0, F0
    for i in range(n):
        lv = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
        L[i] = lv + nmax
        w = qw[i] if has_w else x[i] * x[i]
        fl = np.float32(lv)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    scale = sumlx / suml2 if suml2 != F0 else F0
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(np.float32(nmax) + np.float32(0.1) * np.float32(step)) / mx
        sumlx, suml2 = F0, F0
        for i in range(n):
            fl = np.float32(max(-nmax, min(nmax - 1, nearest_int(iscale * x[i]))))
            w = qw[i] if has_w else x[i] * x[i]
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        if suml2 > F0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit(**EXACT)
def make_q3_quants(n, nmax, x, L):
    """Q3_K's reference scale (do_rmse): levels moved one at a time while the x^2-weighted error drops."""
    mx, amax = F0, F0
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax, mx = ax, x[i]
    if amax < EPS:
        for i in range(n):
            L[i] = 0
        return F0
    iscale = np.float32(-nmax) / mx
    sumlx, suml2 = F0, F0
    for i in range(n):
        lv = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
        L[i] = lv
        w, fl = x[i] * x[i], np.float32(lv)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w, fl = x[i] * x[i], np.float32(L[i])
            slx = sumlx - w * x[i] * fl
            if slx > F0:
                sl2 = suml2 - w * fl * fl
                new_l = max(-nmax, min(nmax - 1, nearest_int(x[i] * sl2 / slx)))
                if new_l != L[i]:
                    fn = np.float32(new_l)
                    slx += w * x[i] * fn
                    sl2 += w * fn * fn
                    if sl2 > F0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l
                        sumlx, suml2 = slx, sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > F0 else F0


@njit(**EXACT)
def make_qkx_quants(n, nmax, x, weights, L, Laux, rmin, rdelta, nstep, use_mad):
    """(scale, -min) for n values as d * L + min, L in [0, nmax]: make_qkx2_quants and make_qkx3_quants (the
    same function once both have weights: their `max == min` and `max <= min` agree after min <= 0)."""
    mn, mx = x[0], x[0]
    sum_w = weights[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:  # noqa: PLR1730 - C's comparisons, kept as written
            mn = x[i]
        if x[i] > mx:  # noqa: PLR1730
            mx = x[i]
        w = weights[i]
        sum_w += w
        sum_x += w * x[i]
    if mn > F0:  # noqa: PLR1730 - C's comparison, kept as written
        mn = F0
    if mx <= mn:
        for i in range(n):
            L[i] = 0
        return F0, -mn
    iscale = np.float32(nmax) / (mx - mn)
    scale = F1 / iscale
    best_error = F0
    for i in range(n):
        L[i] = max(0, min(nmax, nearest_int(iscale * (x[i] - mn))))
        diff = scale * np.float32(L[i]) + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        best_error += weights[i] * diff
    if nstep < 1:
        return scale, -mn
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * np.float32(step) + np.float32(nmax)) / (mx - mn)
        sum_l, sum_l2, sum_xl = F0, F0, F0
        for i in range(n):
            lv = max(0, min(nmax, nearest_int(iscale * (x[i] - mn))))
            Laux[i] = lv
            w, fl = weights[i], np.float32(lv)
            sum_l += w * fl
            sum_l2 += w * fl * fl
            sum_xl += w * fl * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > F0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > F0:
                this_min = F0
                this_scale = sum_xl / sum_l2
            cur_error = F0
            for i in range(n):
                diff = this_scale * np.float32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                cur_error += weights[i] * diff
            if cur_error < best_error:
                for i in range(n):
                    L[i] = Laux[i]
                best_error = cur_error
                scale, mn = this_scale, this_min
    return scale, -mn


@njit(**EXACT)
def make_qp_quants(n, nmax, x, L, qw):
    """A positive scale for the sub-block scales x (levels L in [0, nmax], stored as uint8), weighted by qw."""
    mx = F0
    for i in range(n):
        mx = mx if mx > x[i] else x[i]  # noqa: FURB136 - ggml's MAX(max, x[i]), operand order kept
    if mx < EPS:
        for i in range(n):
            L[i] = 0
        return F0
    iscale = np.float32(nmax) / mx
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = F1 / iscale
    best_mse = F0
    for i in range(n):
        diff = x[i] - scale * np.float32(L[i])
        best_mse += qw[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (np.float32(0.1) * np.float32(step) + np.float32(nmax)) / mx
        scale_is = F1 / iscale_is
        mse = F0
        for i in range(n):
            lv = min(nmax, nearest_int(iscale_is * x[i]))
            diff = x[i] - scale_is * np.float32(lv)
            mse += qw[i] * diff * diff
        if mse < best_mse:
            best_mse, iscale = mse, iscale_is
    sumlx, suml2 = F0, F0
    for i in range(n):
        lv = min(nmax, nearest_int(iscale * x[i]))
        L[i] = lv & 0xFF
        fl = np.float32(lv)
        sumlx += qw[i] * x[i] * fl
        suml2 += qw[i] * fl * fl
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w, fl = qw[i], np.float32(L[i])
            slx = sumlx - w * x[i] * fl
            sl2 = suml2 - w * fl * fl
            if slx > F0 and sl2 > F0:
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    fn = np.float32(new_l)
                    slx += w * x[i] * fn
                    sl2 += w * fn * fn
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx, suml2 = slx, sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > F0 else F0


@njit(**EXACT_INLINE)
def _sigma_weights(x, qw, sigma2, weight):
    """weight[l] = qw[l] * sqrt(sigma2 + x[l]^2): how every *_impl folds the row's spread into the imatrix."""
    for k in range(x.shape[0]):
        weight[k] = qw[k] * np.sqrt(sigma2 + x[k] * x[k])


@njit(**EXACT_INLINE)
def _sum_sq(x):
    s = F0
    for k in range(x.shape[0]):
        s += x[k] * x[k]
    return s


@njit(**EXACT_INLINE)
def _pack_2bit(L, out, o):
    """qs of Q2_K/Q3_K: byte j/4 + l of each 128 holds L[j+l], L[j+l+32], L[j+l+64], L[j+l+96] (2 bits each)."""
    for j in range(0, QK_K, 128):
        for k in range(32):
            out[o + j // 4 + k] = L[j + k] | (L[j + k + 32] << 2) | (L[j + k + 64] << 4) | (L[j + k + 96] << 6)


@njit(**EXACT_INLINE)
def _block_weights(xb, qw, o, sigma2, weights, sw, j, size):
    """Sub-block j's importance weights (qw[o + size j ...] folded with the spread) and their sum into sw[j]."""
    _sigma_weights(xb[size * j : size * (j + 1)], qw[o + size * j : o + size * (j + 1)], sigma2, weights)
    s = F0
    for k in range(size):
        s += weights[k]
    sw[j] = s


# ---- Q2_K: {u8 scales[16] (4-bit scale | 4-bit min << 4); u8 qs[64]; f16 d; f16 dmin}, 84 bytes


@njit(**EXACT)
def _q2_k_row(x, out, qw):
    L, Laux = np.zeros(QK_K, np.int64), np.zeros(16, np.int64)
    weights, mins = np.zeros(16, np.float32), np.zeros(16, np.float32)
    scales, sw = np.zeros(16, np.float32), np.zeros(16, np.float32)
    Ls, Lm = np.zeros(16, np.int64), np.zeros(16, np.int64)
    q4scale = np.float32(15.0)
    for b in range(x.shape[0] // QK_K):
        xb, o = x[b * QK_K : (b + 1) * QK_K], b * 84
        if qw.shape[0] > 0:  # quantize_row_q2_K_impl
            sigma2 = _sum_sq(xb) / np.float32(QK_K)
            for j in range(16):
                _block_weights(xb, qw, b * QK_K, sigma2, weights, sw, j, 16)
                scales[j], mins[j] = make_qkx_quants(16, 3, xb[16 * j :], weights, L[16 * j :], Laux,
                                                     np.float32(-0.9), np.float32(0.05), 36, False)
            dm = round_to_half(make_qp_quants(16, 15, scales, Ls, sw))
            mm = round_to_half(make_qp_quants(16, 15, mins, Lm, sw))
            for j in range(16):
                out[o + j] = (Ls[j] | (Lm[j] << 4)) & 0xFF
        else:  # quantize_row_q2_K_ref
            max_scale, max_min = F0, F0
            for j in range(16):
                for k in range(16):
                    weights[k] = abs(xb[16 * j + k])
                scales[j], mins[j] = make_qkx_quants(16, 3, xb[16 * j :], weights, L[16 * j :], Laux,
                                                     np.float32(-0.5), np.float32(0.1), 15, True)
                if scales[j] > max_scale:  # noqa: PLR1730 - C's comparisons, kept as written
                    max_scale = scales[j]
                if mins[j] > max_min:  # noqa: PLR1730
                    max_min = mins[j]
            dm, mm = F0, F0
            for j in range(16):
                out[o + j] = 0
            if max_scale > F0:
                iscale = q4scale / max_scale
                for j in range(16):
                    out[o + j] = nearest_int(iscale * scales[j]) & 0xFF
                dm = round_to_half(max_scale / q4scale)
            if max_min > F0:
                iscale = q4scale / max_min
                for j in range(16):
                    out[o + j] = (out[o + j] | (nearest_int(iscale * mins[j]) << 4)) & 0xFF
                mm = round_to_half(max_min / q4scale)
        _put_half(out, o + 80, dm)
        _put_half(out, o + 82, mm)
        for j in range(16):
            d = dm * np.float32(np.int64(out[o + j]) & 0xF)
            if d == F0:
                continue
            m = mm * np.float32(np.int64(out[o + j]) >> 4)
            for k in range(16):
                L[16 * j + k] = max(0, min(3, nearest_int((xb[16 * j + k] + m) / d)))
        _pack_2bit(L, out, o + 16)


# ---- Q3_K: {u8 hmask[32]; u8 qs[64]; u8 scales[12] (6 bits, biased by 32); f16 d}, 110 bytes


@njit(**EXACT)
def _q3_k_row(x, out, qw):
    L = np.zeros(QK_K, np.int64)
    scales, weights, sw = np.zeros(16, np.float32), np.zeros(16, np.float32), np.zeros(16, np.float32)
    Ls = np.zeros(16, np.int64)
    for b in range(x.shape[0] // QK_K):
        xb, o = x[b * QK_K : (b + 1) * QK_K], b * 110
        so = o + 96  # the scales
        for k in range(12):
            out[so + k] = 0
        write = True
        if qw.shape[0] > 0:  # quantize_row_q3_K_impl
            sigma2 = np.float32(2.0) * _sum_sq(xb) / np.float32(QK_K)
            for j in range(16):
                _block_weights(xb, qw, b * QK_K, sigma2, weights, sw, j, 16)
                scales[j] = make_qx_quants(16, 4, xb[16 * j :], L[16 * j :], 1, weights)
            d_all = round_to_half(make_qx_quants(16, 32, scales, Ls, 1, sw))
        else:  # quantize_row_q3_K_ref
            max_scale, amax = F0, F0
            for j in range(16):
                scales[j] = make_q3_quants(16, 4, xb[16 * j :], L[16 * j :])
                if abs(scales[j]) > amax:
                    amax, max_scale = abs(scales[j]), scales[j]
            d_all, write = F0, max_scale != F0
            if write:
                iscale = np.float32(-32.0) / max_scale
                for j in range(16):
                    Ls[j] = max(-32, min(31, nearest_int(iscale * scales[j]))) + 32
                d_all = round_to_half(F1 / iscale)
        _put_half(out, o + 108, d_all)
        for j in range(16 if write else 0):
            lv = Ls[j]
            if j < 8:
                out[so + j] = lv & 0xF
            else:
                out[so + j - 8] |= (lv & 0xF) << 4
            out[so + 8 + j % 4] |= (lv >> 4) << (2 * (j // 4))
        for j in range(16):
            sc = (np.int64(out[so + j]) & 0xF) if j < 8 else (np.int64(out[so + j - 8]) >> 4)
            sc = (sc | (((np.int64(out[so + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
            d = d_all * np.float32(sc)
            if d == F0:
                continue
            for k in range(16):
                L[16 * j + k] = max(-4, min(3, nearest_int(xb[16 * j + k] / d))) + 4
        for k in range(32):
            out[o + k] = 0
        m, hm = 0, 1
        for j in range(QK_K):
            if L[j] > 3:
                out[o + m] |= hm
                L[j] -= 4
            m += 1
            if m == 32:
                m, hm = 0, hm << 1
        _pack_2bit(L, out, o + 32)


# ---- Q4_K and Q5_K: {f16 d; f16 dmin; u8 scales[12] (6-bit scales and mins); [u8 qh[32]]; u8 qs[128]}


@njit(**EXACT_INLINE)
def _k4_scales(out, so, ls, lm, j):
    """Scale/min pair j into the 12 packed bytes at so (the inverse of get_scale_min_k4)."""
    if j < 4:
        out[so + j] = ls
        out[so + j + 4] = lm
    else:
        out[so + j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
        out[so + j - 4] |= (ls >> 4) << 6
        out[so + j] |= (lm >> 4) << 6


@njit(**EXACT_INLINE)
def _k4_scale_min(out, so, j):
    """get_scale_min_k4."""
    a, b, c = np.int64(out[so + j]), np.int64(out[so + j + 4]), np.int64(out[so + j - 4]) if j >= 4 else 0
    if j < 4:
        return a & 63, b & 63
    return (b & 0xF) | ((c >> 6) << 4), (b >> 4) | ((a >> 6) << 4)


@njit(**EXACT)
def _qk_super_block(xb, out, o, qw, qo, nmax, L, Laux, weights, mins, scales, sw, Ls, Lm):
    """The 8 scale/min pairs of a Q4_K (nmax 15) or Q5_K (nmax 31) super-block, their packed bytes and the
    levels L of its 256 weights: quantize_row_q{4,5}_K_ref, or *_impl with weights (qw non-empty, from qo)."""
    if qw.shape[0] > 0:
        sigma2 = np.float32(2.0) * _sum_sq(xb) / np.float32(QK_K)
        for j in range(8):
            _block_weights(xb, qw, qo, sigma2, weights, sw, j, 32)
            scales[j], mins[j] = make_qkx_quants(32, nmax, xb[32 * j :], weights, L[32 * j :], Laux,
                                                 np.float32(-0.9), np.float32(0.05), 36, False)
        d = round_to_half(make_qp_quants(8, 63, scales, Ls, sw))
        dmin = round_to_half(make_qp_quants(8, 63, mins, Lm, sw))
        for j in range(8):
            _k4_scales(out, o + 4, min(63, Ls[j]), min(63, Lm[j]), j)
    else:
        max_scale, max_min = F0, F0
        for j in range(8):
            xs = xb[32 * j : 32 * j + 32]
            av_x = np.sqrt(_sum_sq(xs) / np.float32(32.0))
            for k in range(32):
                weights[k] = av_x + abs(xs[k])
            if nmax == 15:
                rmin, nstep = np.float32(-1.0), 20
            else:
                rmin, nstep = np.float32(-0.5), 15
            scales[j], mins[j] = make_qkx_quants(32, nmax, xs, weights, L[32 * j :], Laux, rmin, np.float32(0.1),
                                                 nstep, False)
            if scales[j] > max_scale:  # noqa: PLR1730
                max_scale = scales[j]
            if mins[j] > max_min:  # noqa: PLR1730
                max_min = mins[j]
        inv_scale = np.float32(63.0) / max_scale if max_scale > F0 else F0
        inv_min = np.float32(63.0) / max_min if max_min > F0 else F0
        for j in range(8):
            ls = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)
            lm = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
            _k4_scales(out, o + 4, ls, lm, j)
        d = round_to_half(max_scale / np.float32(63.0))
        dmin = round_to_half(max_min / np.float32(63.0))
    _put_half(out, o, d)
    _put_half(out, o + 2, dmin)
    for j in range(8):
        sc, m = _k4_scale_min(out, o + 4, j)
        dj = d * np.float32(sc)
        if dj == F0:
            continue
        dm = dmin * np.float32(m)
        for k in range(32):
            L[32 * j + k] = max(0, min(nmax, nearest_int((xb[32 * j + k] + dm) / dj)))


@njit(**EXACT)
def _q4_k_row(x, out, qw):
    L, Laux = np.zeros(QK_K, np.int64), np.zeros(32, np.int64)
    weights = np.zeros(32, np.float32)
    mins, scales, sw = np.zeros(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.float32)
    Ls, Lm = np.zeros(8, np.int64), np.zeros(8, np.int64)
    for b in range(x.shape[0] // QK_K):
        o = b * 144
        _qk_super_block(x[b * QK_K : (b + 1) * QK_K], out, o, qw, b * QK_K, 15, L, Laux, weights, mins, scales,
                        sw, Ls, Lm)
        for j in range(0, QK_K, 64):
            for k in range(32):
                out[o + 16 + j // 2 + k] = L[j + k] | (L[j + k + 32] << 4)


@njit(**EXACT)
def _q5_k_row(x, out, qw):
    L, Laux = np.zeros(QK_K, np.int64), np.zeros(32, np.int64)
    weights = np.zeros(32, np.float32)
    mins, scales, sw = np.zeros(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.float32)
    Ls, Lm = np.zeros(8, np.int64), np.zeros(8, np.int64)
    for b in range(x.shape[0] // QK_K):
        o = b * 176
        _qk_super_block(x[b * QK_K : (b + 1) * QK_K], out, o, qw, b * QK_K, 31, L, Laux, weights, mins, scales,
                        sw, Ls, Lm)
        qh, ql = o + 16, o + 48
        for k in range(32):
            out[qh + k] = 0
        m1, m2 = 1, 2
        for n in range(0, QK_K, 64):
            for j in range(32):
                l1, l2 = L[n + j], L[n + j + 32]
                if l1 > 15:
                    l1 -= 16
                    out[qh + j] |= m1
                if l2 > 15:
                    l2 -= 16
                    out[qh + j] |= m2
                out[ql + j] = l1 | (l2 << 4)
            m1, m2 = m1 << 2, m2 << 2
            ql += 32


# ---- Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}, 210 bytes


@njit(**EXACT)
def _q6_k_row(x, out, qw):
    L = np.zeros(QK_K, np.int64)
    scales = np.zeros(16, np.float32)
    for b in range(x.shape[0] // QK_K):
        xb, o = x[b * QK_K : (b + 1) * QK_K], b * 210
        max_scale, max_abs = F0, F0
        for j in range(16):
            # an empty qw slices to empty: make_qx_quants then weighs by x^2
            scales[j] = make_qx_quants(16, 32, xb[16 * j :], L[16 * j :], 1, qw[b * QK_K + 16 * j : b * QK_K + 16 * j + 16])
            if abs(scales[j]) > max_abs:
                max_abs, max_scale = abs(scales[j]), scales[j]
        if max_abs < EPS:
            for k in range(210):
                out[o + k] = 0
            continue
        iscale = np.float32(-128.0) / max_scale
        d = round_to_half(F1 / iscale)
        _put_half(out, o + 208, d)
        for j in range(16):
            out[o + 192 + j] = min(127, nearest_int(iscale * scales[j])) & 0xFF
        for j in range(16):
            dj = d * np.float32(np.int8(out[o + 192 + j]))
            if dj == F0:
                continue
            for k in range(16):
                L[16 * j + k] = max(-32, min(31, nearest_int(xb[16 * j + k] / dj))) + 32
        ql, qh = o, o + 128
        for j in range(0, QK_K, 128):
            for k in range(32):
                a, b1, c, e = L[j + k], L[j + k + 32], L[j + k + 64], L[j + k + 96]
                out[ql + k] = (a & 0xF) | ((c & 0xF) << 4)
                out[ql + k + 32] = (b1 & 0xF) | ((e & 0xF) << 4)
                out[qh + k] = (a >> 4) | ((b1 >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)
            ql += 64
            qh += 32


# ---- the legacy 32-blocks with an importance matrix (quantize_row_q{4,5}_{0,1}_impl)


@njit(**EXACT)
def legacy_weighted_row(x, out, qw, kind):
    """Q4_0 (kind 0), Q4_1 (1), Q5_0 (2), Q5_1 (3) with weights: the scale of each block by make_qx_quants /
    make_qkx3_quants on qw * sqrt(sigma2 + x^2), sigma2 the mean square of the whole row."""
    n = x.shape[0]
    sigma2 = _sum_sq(x) / np.float32(n)
    weight = np.zeros(32, np.float32)
    L, Laux = np.zeros(32, np.int64), np.zeros(32, np.int64)
    size = 18 + 2 * kind  # the block bytes of Q4_0, Q4_1, Q5_0, Q5_1
    for ib in range(n // 32):
        xb, o = x[32 * ib : 32 * ib + 32], size * ib
        _sigma_weights(xb, qw[32 * ib : 32 * ib + 32], sigma2, weight)
        if kind == 0 or kind == 2:
            _put_half(out, o, make_qx_quants(32, 8 if kind == 0 else 16, xb, L, 1, weight))
            qs = o + 2 if kind == 0 else o + 6
        else:
            d, mn = make_qkx_quants(32, 15 if kind == 1 else 31, xb, weight, L, Laux, np.float32(-0.9),
                                    np.float32(0.05), 36, False)
            _put_half(out, o, d)
            _put_half(out, o + 2, -mn)
            qs = o + 4 if kind == 1 else o + 8
        qh = 0
        for j in range(16):
            out[qs + j] = (L[j] & 0xF) | ((L[j + 16] & 0xF) << 4)
            qh |= ((L[j] >> 4) << j) | ((L[j + 16] >> 4) << (j + 16))
        if kind >= 2:
            for k in range(4):
                out[qs - 4 + k] = (qh >> (8 * k)) & 0xFF
