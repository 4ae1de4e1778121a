"""Causal grouped-query attention of a run of new tokens against a sequence's cached keys/values.

Two formulations, chosen as llama.cpp's CPU flash attention chooses (the reference we must reproduce):
- fewer than 64 query rows (decode, short prompts): ggml's one-chunk kernel. Q is rounded to f16, scores
  come from f16 K, and the output accumulates over keys in f16 with an online softmax.
- 64 rows or more (prompt batches): ggml's tiled kernel, i.e. ordinary f32 softmax attention over the
  (f16-rounded) cache. Done here with numpy's batched matmuls.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .f16 import round_f16_inplace, round_f16_view

ONE_CHUNK_MAX_ROWS = 63  # GGML_FA_TILE_Q - 1


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, q_pos0: int, scale: float,
              window: int = 0) -> np.ndarray:
    """q: (n, n_head, hd) at positions q_pos0..q_pos0+n-1; k, v: (n_kv, L, hd) holding positions 0..L-1.

    Query head h reads kv head h // (n_head / n_kv) (ggml's broadcast). `window` > 0 is a sliding
    window: key j is visible to query position p when p - j < window. Returns (n, n_head * hd_v).
    """
    if q.shape[0] <= ONE_CHUNK_MAX_ROWS:
        out = np.empty((q.shape[0], q.shape[1], v.shape[2]), np.float32)
        _attention_f16_online(np.ascontiguousarray(q), k, v, q_pos0, np.float32(scale), window, out)
        return out.reshape(q.shape[0], -1)
    return _attention_f32(q, k, v, q_pos0, scale, window)


def _attention_f32(q, k, v, q_pos0, scale, window):
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


@njit(cache=True, nogil=True, inline="always")
def _dot(a, b, acc, lanes):
    """ggml_vec_dot_f16 on AVX-512, in its summation order: 4 accumulators of 16 lanes over steps of 64,
    folded (0+2, 1+3), (0+1), then the 16 lanes halved down to one. Products of f16 values are exact in
    f32. `acc` (64) and `lanes` (16) are scratch space."""
    acc[:] = 0.0
    n = a.shape[0] - a.shape[0] % 64
    for i in range(0, n, 64):
        for j in range(64):
            acc[j] += a[i + j] * b[i + j]
    for j in range(16):
        lanes[j] = (acc[j] + acc[32 + j]) + (acc[16 + j] + acc[48 + j])
    width = 8
    while width >= 1:
        for j in range(width):
            lanes[j] = lanes[j] + lanes[j + width]
        width //= 2
    s = lanes[0]
    for i in range(n, a.shape[0]):
        s += a[i] * b[i]
    return s


@njit(cache=True, nogil=True, inline="always")
def _scale_add(acc, acc_u, ms, vrow, vs):
    """acc = f16(fma(vrow, vs, f16(acc * ms))): ggml_vec_scale_f16 then ggml_vec_mad_f16 (an f32 FMA,
    emulated in f64: the product is exact there, so one rounding to f32 remains, as in the FMA)."""
    if ms != np.float32(1.0):
        for d in range(acc.shape[0]):
            acc[d] = acc[d] * ms
        round_f16_view(acc, acc_u)
    vs64 = np.float64(vs)
    for d in range(acc.shape[0]):
        acc[d] = np.float32(np.float64(acc[d]) + np.float64(vrow[d]) * vs64)
    round_f16_view(acc, acc_u)


@njit(cache=True, nogil=True, parallel=True)
def _attention_f16_online(q, k, v, q_pos0, scale, window, out):
    """ggml_compute_forward_flash_attn_ext_f16_one_chunk for F16 K/V (values here are f16-rounded f32)."""
    n, n_head, _hd = q.shape
    n_kv, L, hd_v = v.shape
    g = n_head // n_kv
    for job in prange(n * n_head):
        i, h = job // n_head, job % n_head
        kvh = h // g
        p = q_pos0 + i
        qh = q[i, h].copy()
        round_f16_inplace(qh)
        acc = np.zeros(hd_v, np.float32)
        acc_u = acc.view(np.uint32)
        scratch = np.empty(64, np.float32)
        lanes = np.empty(16, np.float32)
        M = -np.inf
        S = np.float32(0.0)
        lo = 0 if window <= 0 else max(0, p - window + 1)
        for j in range(lo, min(p + 1, L)):
            s = _dot(qh, k[kvh, j], scratch, lanes) * scale
            ms = np.float32(1.0)
            vs = np.float32(1.0)
            if s > M:
                ms = np.float32(np.exp(M - s)) if M != -np.inf else np.float32(0.0)
                M = s
            else:
                vs = np.float32(np.exp(s - M))
            _scale_add(acc, acc_u, ms, v[kvh, j], vs)
            S = S * ms + vs
        s_inv = np.float32(1.0) / S if S != 0 else np.float32(0.0)
        for d in range(hd_v):
            out[i, h, d] = acc[d] * s_inv
