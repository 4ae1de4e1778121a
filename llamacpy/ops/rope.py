"""Rotary position embeddings, in ggml's two layouts.

NORM (llama): rotates adjacent pairs (x[2i], x[2i+1]). NEOX (qwen2, gemma3): rotates (x[i], x[i + n_rot/2]).
theta_i = pos * base^(-2i / n_rot) * freq_scale, as ggml_rope_ext with no context extension.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels._common import fma32


@njit(cache=True)
def _powf(a, b):
    """C's powf (libm), as ggml computes theta_scale: numpy's float32 power rounds differently."""
    return a**b


@njit(cache=True)
def _cos_sin(theta, cos, sin):
    """libm's cosf/sinf, as rope_yarn computes the cache (numpy's float32 cos/sin round differently)."""
    for i in range(theta.shape[0]):
        for j in range(theta.shape[1]):
            cos[i, j] = np.cos(theta[i, j])
            sin[i, j] = np.sin(theta[i, j])


class RopeTable:
    """cos/sin (float32) for positions [0, n_ctx), computed once as ggml_rope_cache_init does."""

    def __init__(self, n_rot: int, base: float, n_ctx: int, neox: bool, freq_scale: float = 1.0,
                 freq_factors: np.ndarray | None = None):
        """`freq_factors` (n_rot/2 float32, a GGUF's rope_freqs.weight: llama 3.x's rope scaling) divide each
        pair's angle before the frequency scale, as ggml_rope_ext's freq_factors."""
        self.n_rot, self.neox = n_rot, neox
        # ggml's float32 recurrence: theta_0 = pos, theta_{i+1} = theta_i * base^(-2/n_rot); the angles
        # are then rounded the same way as llama.cpp's, so f16 rounding downstream flips the same bits.
        theta_scale = _powf(np.float32(base), np.float32(-2.0) / np.float32(n_rot))
        theta = np.empty((n_ctx, n_rot // 2), np.float32)
        theta[:, 0] = np.arange(n_ctx, dtype=np.float32)
        for i in range(1, n_rot // 2):
            theta[:, i] = theta[:, i - 1] * theta_scale
        if freq_factors is not None:
            if freq_factors.shape != (n_rot // 2,):
                raise ValueError(f"rope frequency factors: {freq_factors.shape[0]} values for {n_rot // 2} pairs")
            theta /= freq_factors.astype(np.float32)
        theta *= np.float32(freq_scale)
        self.cos = np.empty_like(theta)  # (n_ctx, n_rot/2)
        self.sin = np.empty_like(theta)
        _cos_sin(theta, self.cos, self.sin)

    def shift(self, k: np.ndarray, delta: int) -> np.ndarray:
        """Cached keys k (n_heads, n, head_dim), rotated at their positions, -> rotated `delta` positions further
        (float32), as llama.cpp's K shift ropes its cache by each cell's position change. A negative delta uses
        cos(-t) = cos(t), sin(-t) = -sin(t): ggml's angles for -p are exactly those for p negated."""
        if not 0 < abs(delta) < len(self.cos):
            raise ValueError(f"a shift of {delta} positions is outside the table (0 < |delta| < {len(self.cos)})")
        d = abs(delta)
        cos, sin = self.cos[d:d + 1], self.sin[d:d + 1]
        if delta < 0:
            sin = -sin
        x = np.ascontiguousarray(k.transpose(1, 0, 2), dtype=np.float32)  # (n, n_heads, head_dim)
        out = np.empty_like(x)
        _rope(x, np.zeros(len(x), np.int64), cos, sin, self.n_rot, self.neox, out)
        return out.transpose(1, 0, 2)

    def apply(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: (T, n_heads, head_dim) float32, positions: (T,) -> rotated copy."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(x)
        _rope(x, np.asarray(positions, dtype=np.int64), self.cos, self.sin, self.n_rot, self.neox, out)
        return out


@njit(cache=True, nogil=True)
def _rope(x, positions, cos, sin, n_rot, neox, out):
    """ggml's rotate_pairs as GCC compiles it (FMA contraction): x0' = fma(x0, cos, -(x1 sin)) and
    x1' = fma(x0, sin, x1 cos) for NEOX pairs (i, i + n_rot/2) (scalar code), fma(x1, cos, x0 sin) for
    NORM pairs (2i, 2i+1) (vectorized with fmaddsub); dims past n_rot are copied. Checked bit for bit
    against llama.cpp's Qcur/Kcur on both layouts."""
    half = n_rot // 2
    for t in range(x.shape[0]):
        c, s = cos[positions[t]], sin[positions[t]]
        for h in range(x.shape[1]):
            src, dst = x[t, h], out[t, h]
            for i in range(half):
                i0, i1 = (i, i + half) if neox else (2 * i, 2 * i + 1)
                x0, x1 = src[i0], src[i1]
                dst[i0] = fma32(x0, c[i], -(x1 * s[i]))
                dst[i1] = fma32(x0, s[i], x1 * c[i])
            for i in range(n_rot, src.shape[0]):
                dst[i] = src[i]
