"""Causal grouped-query attention of a run of new tokens against a sequence's cached keys/values.

Two formulations, chosen as llama.cpp's CPU flash attention chooses (the reference we must reproduce):
- fewer than 64 query rows (decode, short prompts): ggml's one-chunk kernel. Q is rounded to f16, scores
  come from f16 K, and the output accumulates over keys in f16 with an online softmax.
- 64 rows or more (prompt batches): ggml's tiled kernel, i.e. ordinary f32 softmax attention over the
  f16 cache, computed only over the keys each row sees.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..kernels._common import fma32, half_to_float, pow2, round_to_half
from ..kernels.simd import F32, HAS_AVX512, I8, I32, I64, Emit
from ..kernels.threads import run_parallel
from . import kv_quant
from .kv_quant import QuantKV

ONE_CHUNK_MAX_ROWS = 63  # GGML_FA_TILE_Q - 1


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, q_pos0: int, scale: float,
              window: int = 0, softcap: float = 0.0, sinks: np.ndarray | None = None) -> np.ndarray:
    """q: (n, n_head, hd) at positions q_pos0..q_pos0+n-1; k, v: (n_kv, L, hd) float16 (the cache; float32
    arrays are rounded to f16) holding positions 0..L-1, or `kv_quant.QuantKV` rows of a quantized cache.

    Query head h reads kv head h // (n_head / n_kv) (ggml's broadcast). `window` > 0 is a sliding
    window: key j is visible to query position p when p - j < window. `softcap` > 0 (gemma2): scores become
    softcap * tanh(score / softcap), as ggml's flash attention applies logit_softcap (its scale divided by the cap
    in f32 first). `sinks` (n_head,): gpt-oss's attention sinks, one more logit per head in each softmax's
    denominator (no value), applied after the keys as ggml does. Returns (n, n_head * hd_v).
    """
    sinks = np.full(q.shape[1], -np.inf, np.float32) if sinks is None else np.asarray(sinks, np.float32)
    cap = np.float32(softcap)
    scale = np.float32(scale) / cap if softcap else np.float32(scale)
    if isinstance(k, QuantKV) or isinstance(v, QuantKV):
        q = np.ascontiguousarray(q, dtype=np.float32)
        if isinstance(k, QuantKV) and k.rot:  # the keys are held rotated: so are the queries (kv_quant.py)
            q = kv_quant.hadamard(q, k.rot)
        out = _attention_quantized(q, k, v, q_pos0, scale, window, cap, sinks)
        return kv_quant.hadamard(out, v.rot) if isinstance(v, QuantKV) and v.rot else out
    k, v = (np.ascontiguousarray(a, dtype=np.float16) for a in (k, v))
    if q.shape[0] <= ONE_CHUNK_MAX_ROWS:
        out = np.empty((q.shape[0], q.shape[1], v.shape[2]), np.float32)
        _attention_f16_online(np.ascontiguousarray(q, dtype=np.float32), k.view(np.uint16), v.view(np.uint16),
                              q_pos0, scale, window, out, cap, sinks)
        return out.reshape(q.shape[0], -1)
    return _attention_many_rows(np.ascontiguousarray(q, dtype=np.float32), k.astype(np.float32),
                                v.astype(np.float32), q_pos0, scale, window, cap, sinks)


def _attention_f32(q, k, v, q_pos0, scale, window):
    """Reference f32 softmax attention with numpy (tests): q (n, n_head, hd), k/v f32 (n_kv, L, hd)."""
    n, n_head, hd = q.shape
    n_kv, L, hd_v = v.shape
    g = n_head // n_kv
    qg = q.reshape(n, n_kv, g, hd).transpose(1, 0, 2, 3).reshape(n_kv, n * g, hd)
    scores = np.matmul(qg, k.transpose(0, 2, 1))  # (n_kv, n*g, L)
    scores *= np.float32(scale)
    qpos = np.arange(q_pos0, q_pos0 + n)[:, None]
    kpos = np.arange(L)[None, :]
    masked = kpos > qpos
    if window > 0:
        masked |= (qpos - kpos) >= window
    if masked.any():
        scores[:, np.repeat(masked, g, axis=0)] = -np.inf  # rows ordered (token, group) like qg
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = np.matmul(scores, v)  # (n_kv, n*g, hd_v)
    return out.reshape(n_kv, n, g, hd_v).transpose(1, 0, 2, 3).reshape(n, n_head * hd_v)


ROW_BLOCK = 128  # query rows per work item of the prompt path (keys past the block's last row are skipped)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _exp_neg(x):
    """exp(x) for x <= 0 in f32 (Cephes' expf polynomial, ~1e-7 relative; 0 below -87): a formulation
    LLVM vectorizes, unlike a call to libm's expf. Only for the f32 prompt path (ggml uses its own
    vectorized approximation there too)."""
    x = max(x, np.float32(-87.0))
    n = np.float32(np.rint(x * np.float32(1.4426950408889634)))
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    return (p * r * r + r + np.float32(1.0)) * pow2(n)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _softmax_causal(s, g, p0, scale, window, cap, sinks):
    """Rows of raw scores s (rows ordered (token, head), g heads per token, the first token at position
    p0; column j = key position j): scale, mask the keys a row must not see, softmax in place; sinks (g,):
    each head's sink logit joins its denominator (-inf: none)."""
    R, L = s.shape
    for r in range(R):
        p = p0 + r // g
        lo = 0 if window <= 0 else max(0, p - window + 1)
        hi = min(p + 1, L)
        row = s[r]
        seen = row[lo:hi]
        m = np.float32(-np.inf)
        for j in range(hi - lo):
            seen[j] *= scale
            if cap != 0:
                seen[j] = cap * np.tanh(seen[j])
            m = max(m, seen[j])
        sink = sinks[r % g]
        m = max(m, sink)
        total = np.float32(0.0) if sink == -np.inf else _exp_neg(sink - m)
        for j in range(hi - lo):
            e = _exp_neg(seen[j] - m)
            seen[j] = e
            total += e
        inv = np.float32(1.0) / total
        for j in range(hi - lo):
            seen[j] *= inv
        row[:lo] = 0.0
        row[hi:] = 0.0


def _attention_many_rows(q, k, v, q_pos0, scale, window, cap, sinks):
    """f32 softmax attention (ggml's tiled path) for prompt batches: per kv head and block of query rows,
    scores = Q K^T and out = P V by BLAS over the keys the block can see, the masked softmax between by
    numba. Blocks run on the kernel threads, each with single-threaded BLAS (see kernels/threads.py)."""
    n, n_head, hd = q.shape
    n_kv, L, hd_v = v.shape
    g = n_head // n_kv
    out = np.empty((n, n_head, hd_v), np.float32)
    jobs = [(h, r0, min(n, r0 + ROW_BLOCK)) for h in range(n_kv) for r0 in range(0, n, ROW_BLOCK)]

    def work(h: int, r0: int, r1: int) -> None:
        keys = min(L, q_pos0 + r1)  # the block's last row sees keys 0..q_pos0 + r1 - 1
        qg = q[r0:r1, h * g:(h + 1) * g].reshape((r1 - r0) * g, hd)
        s = qg @ k[h, :keys].T  # (rows * g, keys)
        _softmax_causal(s, g, q_pos0 + r0, scale, window, cap, sinks[h * g:(h + 1) * g])
        out[r0:r1, h * g:(h + 1) * g] = (s @ v[h, :keys]).reshape(r1 - r0, g, hd_v)

    run_parallel(work, jobs)
    return out.reshape(n, -1)


@intrinsic
def _scores_f16(typingctx, q, k, lo, hi, scale, out):
    """out[j - lo] = ggml_vec_dot_f16(q, k[j]) * scale for lo <= j < hi, as ggml computes it on AVX-512:
    4 accumulators of 16 lanes over steps of 64 (products of f16 values are exact in f32, so fma is
    exact-product-then-add), folded (0+2) + (1+3), then the 16 lanes halved down to one. q: f32 holding
    f16 values (hd, a multiple of 64); k: (L, hd) f16 bits (uint16), C-contiguous rows."""
    sig = types.void(q, k, lo, hi, scale, out)

    def codegen(context, builder, signature, args):
        e = Emit(builder)
        qa, ka, oa = (context.make_array(t)(context, builder, a) for t, a in
                      zip((signature.args[0], signature.args[1], signature.args[5]), (args[0], args[1], args[5])))
        lo_, hi_, scale_ = args[2], args[3], args[4]
        hd = cgutils.unpack_tuple(builder, ka.shape, 2)[1]
        row_bytes = cgutils.unpack_tuple(builder, ka.strides, 2)[0]
        qp = builder.bitcast(qa.data, I8.as_pointer())
        kp = builder.bitcast(ka.data, I8.as_pointer())
        op = builder.bitcast(oa.data, F32.as_pointer())
        v16f, v16h = ir.VectorType(F32, 16), ir.VectorType(ir.HalfType(), 16)
        zero = ir.Constant(v16f, [0.0] * 16)
        with cgutils.for_range(builder, builder.sub(hi_, lo_)) as loop:
            j = builder.add(loop.index, lo_)
            krow = e.at(kp, builder.mul(j, row_bytes))
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
            for a in accs:
                builder.store(zero, a)
            with cgutils.for_range(builder, builder.udiv(hd, I64(64))) as step:
                base = builder.mul(step.index, I64(64))
                for m in range(4):
                    off = builder.add(base, I64(16 * m))
                    qv = e.load(e.at(qp, builder.mul(off, I64(4))), v16f)
                    kv = builder.fpext(e.load(e.at(krow, builder.mul(off, I64(2))), v16h), v16f)
                    builder.store(builder.fadd(builder.load(accs[m]), builder.fmul(qv, kv)), accs[m])
            a0, a1, a2, a3 = (builder.load(a) for a in accs)
            total = builder.fadd(builder.fadd(a0, a2), builder.fadd(a1, a3))
            builder.store(builder.fmul(e.hsum(total), scale_), builder.gep(op, [loop.index]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _scores_f16_avx2(typingctx, q, k, lo, hi, scale, out):
    """out[j - lo] = ggml_vec_dot_f16(q, k[j]) * scale as ggml computes it with AVX2 (no AVX-512 on the host):
    4 accumulators of 8 lanes over steps of 32, folded (0+2) + (1+3), the halves added, then two hadds:
    (t0 + t1) + (t2 + t3). hd a multiple of 32 (`_scores_avx2` takes the others); as `_scores_f16` otherwise."""
    sig = types.void(q, k, lo, hi, scale, out)

    def codegen(context, builder, signature, args):
        e = Emit(builder)
        qa, ka, oa = (context.make_array(t)(context, builder, a) for t, a in
                      zip((signature.args[0], signature.args[1], signature.args[5]), (args[0], args[1], args[5])))
        lo_, hi_, scale_ = args[2], args[3], args[4]
        hd = cgutils.unpack_tuple(builder, ka.shape, 2)[1]
        row_bytes = cgutils.unpack_tuple(builder, ka.strides, 2)[0]
        qp = builder.bitcast(qa.data, I8.as_pointer())
        kp = builder.bitcast(ka.data, I8.as_pointer())
        op = builder.bitcast(oa.data, F32.as_pointer())
        v8f, v8h = ir.VectorType(F32, 8), ir.VectorType(ir.HalfType(), 8)
        zero = ir.Constant(v8f, [0.0] * 8)
        with cgutils.for_range(builder, builder.sub(hi_, lo_)) as loop:
            j = builder.add(loop.index, lo_)
            krow = e.at(kp, builder.mul(j, row_bytes))
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
            for a in accs:
                builder.store(zero, a)
            with cgutils.for_range(builder, builder.udiv(hd, I64(32))) as step:
                base = builder.mul(step.index, I64(32))
                for m in range(4):
                    off = builder.add(base, I64(8 * m))
                    qv = e.load(e.at(qp, builder.mul(off, I64(4))), v8f)
                    kv = builder.fpext(e.load(e.at(krow, builder.mul(off, I64(2))), v8h), v8f)
                    builder.store(builder.fadd(builder.load(accs[m]), builder.fmul(qv, kv)), accs[m])
            a0, a1, a2, a3 = (builder.load(a) for a in accs)
            x = builder.fadd(builder.fadd(a0, a2), builder.fadd(a1, a3))
            t = builder.fadd(e.shuffle(x, None, [0, 1, 2, 3]), e.shuffle(x, None, [4, 5, 6, 7]))
            lane = [builder.extract_element(t, I32(i)) for i in range(4)]
            total = builder.fadd(builder.fadd(lane[0], lane[1]), builder.fadd(lane[2], lane[3]))
            builder.store(builder.fmul(total, scale_), builder.gep(op, [loop.index]))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _scores_any(q, k, lo, hi, scale, out):
    """_scores_f16 for head sizes that are not multiples of 64: the 64-steps as there, leftover elements
    added in double (ggml_vec_dot_f16's scalar tail)."""
    n = q.shape[0] - q.shape[0] % 64
    acc = np.empty(64, np.float32)
    lanes = np.empty(16, np.float32)
    for j in range(lo, hi):
        kr = k[j]
        acc[:] = 0.0
        for i in range(0, n, 64):
            for m in range(64):
                acc[m] += q[i + m] * half_to_float(kr[i + m])
        for m in range(16):
            lanes[m] = (acc[m] + acc[32 + m]) + (acc[16 + m] + acc[48 + m])
        for m in range(8):
            lanes[m] = lanes[m] + lanes[m + 8]
        a0, a1 = lanes[0] + lanes[4], lanes[1] + lanes[5]
        a2, a3 = lanes[2] + lanes[6], lanes[3] + lanes[7]
        s = np.float64((a0 + a2) + (a1 + a3))
        for i in range(n, q.shape[0]):
            s += np.float64(q[i] * half_to_float(kr[i]))
        out[j - lo] = np.float32(s) * scale


@njit(cache=True, nogil=True, inline="always")
def _scores_avx2(q, k, lo, hi, scale, out):
    """ggml_vec_dot_f16 as ggml computes it with AVX2 (no AVX-512 on the host): 4 accumulators of 8 lanes over
    steps of 32, folded (0+2) + (1+3), the 8 lanes as _mm_add_ps of the halves then two hadds, the tail (head
    sizes not a multiple of 32) added in double. Products of f16 values are exact in f32, so ggml's fma is an
    add of the exact product, as here."""
    n = q.shape[0] - q.shape[0] % 32
    acc = np.empty(32, np.float32)
    for j in range(lo, hi):
        kr = k[j]
        acc[:] = 0.0
        for i in range(0, n, 32):
            for m in range(32):
                acc[m] += q[i + m] * half_to_float(kr[i + m])
        for m in range(8):
            acc[m] = (acc[m] + acc[16 + m]) + (acc[8 + m] + acc[24 + m])
        t0, t1 = acc[0] + acc[4], acc[1] + acc[5]
        t2, t3 = acc[2] + acc[6], acc[3] + acc[7]
        s = np.float64((t0 + t1) + (t2 + t3))
        for i in range(n, q.shape[0]):
            s += np.float64(q[i] * half_to_float(kr[i]))
        out[j - lo] = np.float32(s) * scale


@njit(cache=True, nogil=True, inline="always")
def _row_scores_f16(qrow, k, lo, hi, scale, scores):
    """scores[j - lo] = ggml_vec_dot_f16(f16(q), k[j]) * scale for keys lo..hi-1 (k: (L, hd) f16 bits), in the
    host's SIMD order."""
    hd = qrow.shape[0]
    qh = np.empty(hd, np.float32)
    for d in range(hd):
        qh[d] = round_to_half(qrow[d])
    if not HAS_AVX512:  # ggml's order is the host's: llamacpy matches the llama.cpp built on the same machine
        if hd % 32 == 0:
            _scores_f16_avx2(qh, k, lo, hi, scale, scores)
        else:
            _scores_avx2(qh, k, lo, hi, scale, scores)
    elif hd % 64 == 0:
        _scores_f16(qh, k, lo, hi, scale, scores)
    else:
        _scores_any(qh, k, lo, hi, scale, scores)


@njit(cache=True, nogil=True, inline="always")
def _finish(acc, M, S, sink, out):
    """The end of ggml's one-chunk softmax: an attention sink (`sink` > -inf) after the keys (acc, now f32, times
    exp(M - sink) if it raises the max; S = fma(S, ms, vs)), then out = acc / S."""
    hd_v = out.shape[0]
    if sink != -np.inf:
        ms = np.float32(1.0)
        vs = np.float32(1.0)
        if sink > M:
            ms = np.float32(np.exp(M - sink))
            for d in range(hd_v):
                acc[d] = acc[d] * ms
        else:
            vs = np.float32(np.exp(sink - M))
        S = fma32(S, ms, vs)
    s_inv = np.float32(1.0) / S if S != 0 else np.float32(0.0)
    for d in range(hd_v):
        out[d] = acc[d] * s_inv


@njit(cache=True, nogil=True, inline="always")
def _accumulate(scores, v16, v32, v_f16, lo, hi, out, sink):
    """ggml's one-chunk online softmax over keys lo..hi-1 (scores indexed from lo, final). `v_f16`: the values are
    v16 (L, hd_v) f16 bits, accumulated in f16 (an F16 V): when a key raises the max, acc = f16(acc * exp(M_old - M))
    (ggml_vec_scale_f16), then acc = f16(fma(v, exp(s - M), acc)) (ggml_vec_mad_f16). Otherwise they are v32 (L,
    hd_v) f32 (a quantized V dequantized: ggml's VKQ32), the same steps without the f16 roundings
    (ggml_vec_scale_f32, ggml_vec_mad_f32). S = fma(S, ms, vs) (GCC contracts S*ms + vs). (Two arrays, not one:
    numba types both branches.)"""
    hd_v = out.shape[0]
    acc = np.zeros(hd_v, np.float32)
    M = np.float32(-np.inf)
    S = np.float32(0.0)
    for j in range(lo, hi):
        s = scores[j - lo]
        ms = np.float32(1.0)
        vs = np.float32(1.0)
        if s > M:
            ms = np.float32(np.exp(M - s))  # exp(-inf) = 0 for the first key
            M = s
            for d in range(hd_v):
                acc[d] = round_to_half(acc[d] * ms) if v_f16 else acc[d] * ms
        else:
            vs = np.float32(np.exp(s - M))
        if v_f16:
            for d in range(hd_v):
                acc[d] = round_to_half(fma32(half_to_float(v16[j, d]), vs, acc[d]))
        else:
            for d in range(hd_v):
                acc[d] = fma32(v32[j, d], vs, acc[d])
        S = fma32(S, ms, vs)
    _finish(acc, M, S, sink, out)


@njit(cache=True, nogil=True, inline="always")
def attend_f16(qrow, k, v, lo, hi, scale, out, cap, slope, qpos, sink):
    """One query row against keys lo..hi-1 (k, v: (L, hd) f16 bits), as ggml's one-chunk flash attention
    computes it for F16 K/V: Q rounded to f16, scores first (they do not depend on the running max), then the
    online softmax accumulating V in f16 (`_accumulate`). `slope` != 0: ALiBi, each score plus
    slope * -|qpos - j| (ggml's f16 mask times the head's slope). Not fastmath: the f16 roundings are the point."""
    scores = np.empty(max(hi - lo, 0), np.float32)
    _row_scores_f16(qrow, k, lo, hi, scale, scores)
    if cap != 0:  # logit soft-capping: s = cap * tanhf(s), after the (cap-divided) scale
        for j in range(hi - lo):
            scores[j] = cap * np.tanh(scores[j])
    if slope != 0:
        for j in range(hi - lo):
            scores[j] += slope * np.float32(-abs(qpos - lo - j))
    _accumulate(scores, v, np.zeros((1, 1), np.float32), True, lo, hi, out, sink)


@njit(cache=True, nogil=True, parallel=True)
def _scores_rows_f16(q, k, scale, out):
    """Scores of a block of query rows q (b, n_head, hd) f32 against all L keys of k (n_kv, L, hd) f16 bits:
    out (b, n_head, L), as `_row_scores_f16`."""
    b, n_head = q.shape[0], q.shape[1]
    g = n_head // k.shape[0]
    for job in prange(b * n_head):
        i, h = job // n_head, job % n_head
        _row_scores_f16(q[i, h], k[h // g], 0, k.shape[1], scale, out[i, h])


@njit(cache=True, nogil=True, parallel=True)
def _softmax_values(scores, v16, v32, v_f16, r0, q_pos0, window, g, out, cap, sinks):
    """Rows r0.. of a block of queries: scores (rows, n_head, L) scaled, values v16 (n_kv, L, hd_v) f16 bits
    (`v_f16`) or v32 f32 (the other one a placeholder), out (n, n_head, hd_v); row i of the block is the query at
    position q_pos0 + r0 + i."""
    rows, n_head, L = scores.shape
    for job in prange(rows * n_head):
        i, h = job // n_head, job % n_head
        p = q_pos0 + r0 + i
        lo = 0 if window <= 0 else max(0, p - window + 1)
        hi = min(p + 1, L)
        s = scores[i, h, lo:hi]
        if cap != 0:
            for j in range(hi - lo):
                s[j] = cap * np.tanh(s[j])
        kvh = h // g
        _accumulate(s, v16[kvh if v_f16 else 0], v32[0 if v_f16 else kvh], v_f16, lo, hi, out[r0 + i, h], sinks[h])


def _attention_quantized(q, k, v, q_pos0, scale, window, cap, sinks):
    """A KV cache with a quantized K or V (kv_quant.py): ggml's one-chunk kernel for every row (its tiled kernel
    takes only F16/F32 caches of one type). Scores by blocks of query rows, then the online softmax."""
    n, n_head, hd = q.shape
    n_kv, L, hd_v = v.shape
    g = n_head // n_kv
    out = np.empty((n, n_head, hd_v), np.float32)
    if isinstance(v, QuantKV):
        vals = kv_quant.to_f32(v.data.reshape(n_kv * L, -1), v.type, hd_v).reshape(n_kv, L, hd_v)
    else:
        vals = np.ascontiguousarray(v, dtype=np.float16).view(np.uint16)
    k16 = None if isinstance(k, QuantKV) else np.ascontiguousarray(k, dtype=np.float16).view(np.uint16)
    for r0 in range(0, n, kv_quant.ROW_BLOCK):
        rows = q[r0:r0 + kv_quant.ROW_BLOCK]
        b = rows.shape[0]
        scores = np.empty((b, n_head, L), np.float32)
        if k16 is not None:
            _scores_rows_f16(rows, k16, scale, scores)
        else:
            for h in range(n_kv):
                qh = rows[:, h * g:(h + 1) * g].reshape(b * g, hd)
                s = kv_quant.key_scores(qh, k.data[h], k.type)
                scores[:, h * g:(h + 1) * g] = (s * scale).reshape(b, g, L)
        if isinstance(v, QuantKV):
            _softmax_values(scores, np.zeros((1, 1, 1), np.uint16), vals, False, r0, q_pos0, window, g, out, cap,
                            sinks)
        else:
            _softmax_values(scores, vals, np.zeros((1, 1, 1), np.float32), True, r0, q_pos0, window, g, out, cap,
                            sinks)
    return out.reshape(n, -1)


@njit(cache=True, nogil=True, parallel=True)
def _attention_f16_online(q, k, v, q_pos0, scale, window, out, cap, sinks):
    """ggml_compute_forward_flash_attn_ext_f16_one_chunk (see attend_f16) for rows of one sequence."""
    n, n_head = q.shape[0], q.shape[1]
    n_kv, L = v.shape[0], v.shape[1]
    g = n_head // n_kv
    for job in prange(n * n_head):
        i, h = job // n_head, job % n_head
        kvh = h // g
        p = q_pos0 + i
        lo = 0 if window <= 0 else max(0, p - window + 1)
        attend_f16(q[i, h], k[kvh], v[kvh], lo, min(p + 1, L), scale, out[i, h], cap, np.float32(0.0), 0, sinks[h])


@njit(cache=True, nogil=True, parallel=True)
def _attention_bidir_f16(q, k, v, starts, lens, scale, slopes, out):
    """Each token of a segment over all tokens of that segment with ggml's one-chunk flash attention
    (`attend_f16`): llama.cpp casts an encoder's f32 K and V to f16 for it. q: (T, n_head, hd) f32;
    k, v: (n_head, T, hd) f16 bits; one (token, head) per work item."""
    n_head = q.shape[1]
    n_rows = 0
    for s in range(starts.shape[0]):
        n_rows += lens[s]
    rows, first, last = np.empty(n_rows, np.int64), np.empty(n_rows, np.int64), np.empty(n_rows, np.int64)
    r = 0
    for s in range(starts.shape[0]):
        for i in range(starts[s], starts[s] + lens[s]):
            rows[r], first[r], last[r] = i, starts[s], starts[s] + lens[s]
            r += 1
    for job in prange(n_rows * n_head):
        r, h = job // n_head, job % n_head
        i = rows[r]
        attend_f16(q[i, h], k[h], v[h], first[r], last[r], scale, out[i, h], np.float32(0.0), slopes[h], i,
                   np.float32(-np.inf))


def alibi_slopes(n_head: int, max_bias: float) -> np.ndarray:
    """ggml_soft_max_ext's per-head ALiBi slopes for max_bias (float32, as ggml computes them)."""
    n_log2 = 1 << int(np.floor(np.log2(n_head)))
    m0 = np.float32(2.0) ** (np.float32(-max_bias) / np.float32(n_log2))
    m1 = np.float32(2.0) ** (np.float32(-max_bias / 2.0) / np.float32(n_log2))
    return np.array([m0 ** np.float32(h + 1) if h < n_log2 else m1 ** np.float32(2 * (h - n_log2) + 1)
                     for h in range(n_head)], np.float32)


def attention_bidir(q: np.ndarray, k: np.ndarray, v: np.ndarray, lengths: list[int], scale: float,
                    slopes: np.ndarray | None = None) -> np.ndarray:
    """Non-causal attention (encoders such as BERT): q, k, v (T, n_head, hd) hold consecutive segments of
    `lengths` tokens; each token sees every token of its own segment. `slopes`: ALiBi (`alibi_slopes`).
    As llama.cpp's flash attention over K and V cast to f16: a segment shorter than 64 tokens through its
    one-chunk kernel, a longer one as f32 softmax attention over the f16-rounded keys and values.
    Returns (T, n_head * hd)."""
    q, k, v = (np.ascontiguousarray(a, dtype=np.float32) for a in (q, k, v))
    T, n_head, hd = q.shape
    slopes = np.zeros(n_head, np.float32) if slopes is None else np.asarray(slopes, np.float32)
    out = np.empty((T, n_head, hd), np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    lens = np.asarray(lengths, np.int64)
    small = lens <= ONE_CHUNK_MAX_ROWS
    if small.any():
        k16, v16 = (np.ascontiguousarray(a.transpose(1, 0, 2)).astype(np.float16).view(np.uint16) for a in (k, v))
        _attention_bidir_f16(q, k16, v16, starts[small], lens[small], np.float32(scale), slopes, out)
    for s0, n in zip(starts[~small], lens[~small]):
        qs = q[s0:s0 + n].transpose(1, 0, 2)  # (n_head, n, hd); keys and values rounded to f16 as ggml casts them
        ks, vs = (a[s0:s0 + n].astype(np.float16).astype(np.float32).transpose(1, 0, 2) for a in (k, v))
        scores = np.matmul(qs, ks.transpose(0, 2, 1)) * np.float32(scale)  # (n_head, n, n)
        if slopes.any():
            pos = np.arange(n, dtype=np.float32)
            scores += slopes[:, None, None] * -np.abs(pos[:, None] - pos[None, :])
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out[s0:s0 + n] = np.matmul(scores, vs).transpose(1, 0, 2)
    return out.reshape(T, n_head * hd)
