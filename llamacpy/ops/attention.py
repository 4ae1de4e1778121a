"""Causal grouped-query attention of a run of new tokens against a sequence's cached keys/values."""

from __future__ import annotations

import numpy as np


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, q_pos0: int, scale: float,
              window: int = 0) -> np.ndarray:
    """q: (n, n_head, hd) at positions q_pos0..q_pos0+n-1; k, v: (n_kv, L, hd) holding positions 0..L-1.

    Query head h reads kv head h // (n_head / n_kv) (ggml's broadcast). `window` > 0 is a sliding
    window: key j is visible to query position p when p - j < window. Returns (n, n_head * hd).
    """
    n, n_head, hd = q.shape
    n_kv, L, hd_v = v.shape[0], v.shape[1], v.shape[2]
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
        m = np.repeat(masked, g, axis=0)  # rows ordered (token, group) like qg
        scores[:, m] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = np.matmul(scores, v)  # (n_kv, n*g, hd_v)
    return out.reshape(n_kv, n, g, hd_v).transpose(1, 0, 2, 3).reshape(n, n_head * hd_v)
