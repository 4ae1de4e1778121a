"""Sequence embeddings from hidden states: llama.cpp's pooling types and common_embd_normalize."""

from __future__ import annotations

import numpy as np

# llama_pooling_type; "rank" (a classification head) is named but not run here
POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
POOLING_NAMES = {v: k for k, v in POOLING.items()}


def pool(hidden: np.ndarray, lengths: list[int], pooling: str) -> list[np.ndarray]:
    """hidden (T, n_embd) for consecutive sequences of `lengths` tokens -> per sequence: (1, n_embd) pooled
    (mean of all tokens, the first token, or the last) or, for "none", the (n, n_embd) token vectors."""
    if pooling not in ("none", "mean", "cls", "last"):
        raise ValueError(f"pooling {pooling!r} is not supported (none, mean, cls, last)")
    out, start = [], 0
    for n in lengths:
        h = hidden[start:start + n]
        if pooling == "mean":
            out.append(h.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :])
        elif pooling == "cls":
            out.append(h[:1].copy())
        elif pooling == "last":
            out.append(h[-1:].copy())
        else:
            out.append(h.copy())
        start += n
    return out


def normalize(x: np.ndarray, embd_norm: float) -> np.ndarray:
    """common_embd_normalize on each row: -1 none, 0 max-abs scaled to the int16 range (32760), 1 taxicab,
    2 euclidean, p > 2 the p-norm. A zero vector stays zero."""
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x.astype(np.float64))
    if embd_norm < 0:
        return x.copy()
    if embd_norm == 0:
        total = a.max(axis=-1, keepdims=True) / 32760.0
    elif embd_norm == 2:
        total = np.sqrt((a * a).sum(axis=-1, keepdims=True))
    else:
        total = (a ** embd_norm).sum(axis=-1, keepdims=True) ** (1.0 / embd_norm)
    scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return (x * scale).astype(np.float32)
