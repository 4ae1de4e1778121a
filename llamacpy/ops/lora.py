"""LoRA arithmetic (llama.cpp's build_lora_mm and llm_build_inp_embd): what an adapted projection adds. Loading
and choosing the adapters: models/lora.py.

ggml multiplies an F16 adapter tensor by activations rounded to f16 (exact products in f32), summed in one of two
orders, and the models amplify the difference into tenths of a nat, so both are reproduced:
- two rows or more and an inner size that is a multiple of the SIMD width (16 lanes with AVX-512, 8 with AVX2):
  llamafile's tinyBLAS, one accumulator of that many lanes per output (lane m: elements m, m + lanes, ...), then
  the lanes summed by halving (`_mm512_reduce_add_ps` / its hsum);
- otherwise (one row: decode; or a rank such as 8 under AVX-512) ggml_vec_dot_f16, as flash attention's scores
  (attention._row_scores_f16: 4 accumulators of the SIMD width, the tail in double).
So a row's bits depend on how many rows ggml multiplies with it. Each row here gets those of its own sequence run
alone (`LoraRows`: how many rows its sequence puts through the call), whatever else shares the step.
F32 and quantized adapter tensors are multiplied in f32 by BLAS (close, not bit-exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..kernels.floats import F32_LANES, f32_tinyblas
from .attention import _row_scores_f16


@dataclass(frozen=True)
class LoraWeight:
    a: np.ndarray  # f32 (rank, n_in); token_embd: (n_vocab, rank)
    b: np.ndarray  # f32 (n_out, rank); token_embd: (n_embd, rank)
    a16: np.ndarray | None = None  # the f16 bits of an F16 A (None: F32 or quantized in the file)
    b16: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return self.b.shape[1]


class LoraRows:
    """Per row of the next adapted products: how many rows its own sequence brings to the call (set by the model
    before its blocks and before the output; None: the call's row count for every row)."""

    counts: np.ndarray | None = None


@njit(cache=True, nogil=True, parallel=True)
def _vec_dot_f16(x, w16, out):
    """out[t, n] = ggml_vec_dot_f16(w[n], x[t]) (x f32 holding f16 values, w16 the f16 bits)."""
    for t in prange(x.shape[0]):
        _row_scores_f16(x[t], w16, 0, w16.shape[0], np.float32(1.0), out[t])


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def _mul(x: np.ndarray, w: np.ndarray, w16: np.ndarray | None, single: np.ndarray) -> np.ndarray:
    """x (T, K) times w (N, K)^T as ggml's mul_mat computes it for w's type; `single` (T,): the rows ggml would
    multiply alone (vec_dot order), the others with at least one more (tinyBLAS's)."""
    if w16 is None:
        return x @ w.T
    x = np.ascontiguousarray(_f16(x))
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    # tinyBLAS as for F32 weights (kernels/floats.py): products of f16 values are exact in f32, so its FMAs round
    # as ggml's f16 multiply-adds do
    tiled = ~single if x.shape[1] % F32_LANES == 0 else np.zeros(len(x), np.bool_)
    if tiled.all():
        f32_tinyblas(w, x, out)
    elif not tiled.any():
        _vec_dot_f16(x, w16, out)
    else:
        rows = np.flatnonzero(tiled)
        part = np.empty((len(rows), w.shape[0]), np.float32)
        f32_tinyblas(w, np.ascontiguousarray(x[rows]), part)
        out[rows] = part
        rows = np.flatnonzero(~tiled)
        part = np.empty((len(rows), w.shape[0]), np.float32)
        _vec_dot_f16(np.ascontiguousarray(x[rows]), w16, part)
        out[rows] = part
    return out


def delta(x: np.ndarray, w: LoraWeight, scale: np.float32, counts: np.ndarray | None = None) -> np.ndarray:
    """scale * B (A x) for rows x (T, n_in); counts (T,): see LoraRows."""
    single = (counts == 1) if counts is not None and len(counts) == len(x) else np.full(len(x), len(x) == 1)
    out = _mul(_mul(x, w.a, w.a16, single), w.b, w.b16, single)
    out *= scale
    return out


def embd_delta(tokens: np.ndarray, w: LoraWeight, scale: np.float32) -> np.ndarray:
    """The token embeddings' adapter: scale * (rows `tokens` of A) B^T."""
    out = _mul(w.a[tokens], w.b, w.b16, np.full(len(tokens), len(tokens) == 1))
    out *= scale
    return out
