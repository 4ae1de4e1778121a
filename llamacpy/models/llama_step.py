"""The llama/qwen2 block for a few tokens (decoding, parallel sequences, short prompt chunks) as one
numba call per layer: no per-step Python between the ~25 operations of a layer.

Same operations, same kernels, same results as `llama.Model.block` (bit for bit; the tests compare
the two): RMS norm -> activation quantization -> q/k/v products (one parallel loop over the rows of
all three) -> biases -> RoPE -> KV cache store -> f16 one-chunk attention (parallel over tokens x heads)
-> output product -> residual -> RMS norm -> gate/up products (one parallel loop) -> SwiGLU -> down
product -> residual. Tokens may belong to different sequences (cache rows) at any positions.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..kernels._common import CHUNK, half_bits
from ..kernels.dispatch import quantize_rows, rows_dot
from ..ops.attention import attend_f16
from ..ops.basic import _rms_norm_rows, _swiglu
from ..ops.rope import _rope


@njit(cache=True, nogil=True, parallel=True)
def _products(w, kinds, kset, m0, m1, x, q, d, s0, s1, qk, dk, sk, outs):
    """outs[m] = x @ w[m].T for m in [m0, m1): one parallel loop over the row chunks of all matrices
    (kset: the `dispatch.KindSet` of the model's kinds)."""
    chunks = np.zeros(m1 - m0 + 1, np.int64)
    for m in range(m0, m1):
        chunks[m - m0 + 1] = chunks[m - m0] + (w[m].shape[0] + CHUNK - 1) // CHUNK
    for c in prange(chunks[m1 - m0]):
        m = m0
        while c >= chunks[m - m0 + 1]:
            m += 1
        r = (c - chunks[m - m0]) * CHUNK
        rows_dot(kset, kinds[m], w[m], q, d, s0, s1, qk, dk, sk, outs[m], r, min(w[m].shape[0], r + CHUNK))


@njit(cache=True, nogil=True)
def _acts(x, n, T, need):
    q = np.empty((T, n), np.int8)
    d = np.empty((T, n // 32), np.float32)
    s0 = np.empty((T, n // 32), np.int32)
    s1 = np.empty((T, n // 32), np.float32)
    nk = n // 256 if need[2] else 0
    qk = np.empty((T, n if need[2] else 0), np.int8)
    dk = np.empty((T, nk), np.float32)
    sk = np.empty((T, nk * 16), np.int16)
    quantize_rows(x, need, q, d, s0, s1, qk, dk, sk)
    return q, d, s0, s1, qk, dk, sk


@njit(cache=True, nogil=True, parallel=True)
def _attention(q, kc, vc, seq, pos, scale, out):
    """out[t, h] = attention of query row (t, h) over keys 0..pos[t] of cache row seq[t]."""
    T, n_head = q.shape[0], q.shape[1]
    g = n_head // kc.shape[1]
    for job in prange(T * n_head):
        t, h = job // n_head, job % n_head
        attend_f16(q[t, h], kc[seq[t], h // g], vc[seq[t], h // g], 0, pos[t] + 1, scale, out[t, h], np.float32(0.0),
                   np.float32(0.0), 0, np.float32(-np.inf))


@njit(cache=True, nogil=True)
def layer_step(x, seq, pos, attn_norm, ffn_norm, eps, w, kinds, kset, need, bias, has_bias, qk_norm, has_qk_norm,
               cos, sin, n_rot, neox, kc, vc, n_head, hd, scale):
    """One llama block for the T rows of x (T, n_embd), in place. w: the 7 weights' blocks (q, k, v, o,
    gate, up, down), kinds their `dispatch.KINDS` (or `ROW_EXACT` kinds), kset the `dispatch.KindSet` covering
    the kinds of every layer (one compiled step per model's set of types), need (4, 3): activation formats
    needed at the four product inputs; bias (3 vectors) added to q, k, v where has_bias; with has_qk_norm, q and
    k get per-head RMS norms (qk_norm: their two weight vectors) before RoPE (qwen3); kc, vc: the layer's
    cache as f16 bits (n_seq, n_kv, n_ctx, hd)."""
    T, n_embd = x.shape
    n_kv = kc.shape[1]
    # -- attention
    h = np.empty_like(x)
    _rms_norm_rows(x, attn_norm, eps, h)
    a = _acts(h, n_embd, T, need[0])
    qkv = (np.empty((T, w[0].shape[0]), np.float32), np.empty((T, w[1].shape[0]), np.float32),
           np.empty((T, w[2].shape[0]), np.float32))
    _products(w, kinds, kset, 0, 3, h, a[0], a[1], a[2], a[3], a[4], a[5], a[6], qkv)
    for m in range(3):
        if has_bias[m]:
            for t in range(T):
                qkv[m][t] += bias[m]
    if has_qk_norm:
        for m in range(2):
            heads = qkv[m].reshape((-1, hd))
            _rms_norm_rows(heads, qk_norm[m], eps, heads)
    qr = np.empty((T, n_head, hd), np.float32)
    kr = np.empty((T, n_kv, hd), np.float32)
    _rope(qkv[0].reshape((T, n_head, hd)), pos, cos, sin, n_rot, neox, qr)
    _rope(qkv[1].reshape((T, n_kv, hd)), pos, cos, sin, n_rot, neox, kr)
    v = qkv[2].reshape((T, n_kv, hd))
    for t in range(T):
        for j in range(n_kv):
            for i in range(hd):
                kc[seq[t], j, pos[t], i] = half_bits(kr[t, j, i])
                vc[seq[t], j, pos[t], i] = half_bits(v[t, j, i])
    attn = np.empty((T, n_head, hd), np.float32)
    _attention(qr, kc, vc, seq, pos, scale, attn)
    attn2 = attn.reshape((T, n_head * hd))
    a = _acts(attn2, n_head * hd, T, need[1])
    o = (np.empty((T, w[3].shape[0]), np.float32),)
    _products(w[3:4], kinds[3:4], kset, 0, 1, attn2, a[0], a[1], a[2], a[3], a[4], a[5], a[6], o)
    x += o[0]
    # -- feed-forward
    _rms_norm_rows(x, ffn_norm, eps, h)
    a = _acts(h, n_embd, T, need[2])
    gu = (np.empty((T, w[4].shape[0]), np.float32), np.empty((T, w[5].shape[0]), np.float32))
    _products(w[4:6], kinds[4:6], kset, 0, 2, h, a[0], a[1], a[2], a[3], a[4], a[5], a[6], gu)
    ff = np.empty_like(gu[0])
    _swiglu(gu[0], gu[1], ff)
    a = _acts(ff, ff.shape[1], T, need[3])
    dn = (np.empty((T, w[6].shape[0]), np.float32),)
    _products(w[6:7], kinds[6:7], kset, 0, 1, ff, a[0], a[1], a[2], a[3], a[4], a[5], a[6], dn)
    x += dn[0]
