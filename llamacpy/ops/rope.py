"""Rotary position embeddings, in ggml's two layouts.

NORM (llama): rotates adjacent pairs (x[2i], x[2i+1]). NEOX (qwen2, gemma3): rotates (x[i], x[i + n_rot/2]).
theta_i = pos * base^(-2i / n_rot) * freq_scale, as ggml_rope_ext; with YaRN (`Yarn`) each pair's angle mixes the
scaled and the unscaled one by a ramp over the pairs and cos/sin are multiplied by an attention factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Yarn:
    """YaRN context extension (rope.scaling.type "yarn"), with llama.cpp's defaults: ext_factor 1, the attention
    factor as llama_context computes it (`attn_factor_of`), beta_fast 32, beta_slow 1, and the original context."""

    n_ctx_orig: int
    attn_factor: float
    ext_factor: float = 1.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0

    @staticmethod
    def attn_factor_of(factor: float, log_mul: float = 0.0, rope_attn_factor: float = 1.0) -> float:
        """llama_context's yarn_attn_factor in float32 (libllama is built without FMA): get_mscale(factor, 1)
        (over get_mscale(factor, log_mul) when the file has rope.scaling.yarn_log_multiplier), times
        1 / (1 + 0.1 log factor), which cancels the kernel's own magnitude scaling, times rope.scaling.attn_factor."""
        f32, f = np.float32, np.float32(factor)

        def mscale(m: float) -> np.float32:
            return f32(1.0) if f <= 1 else f32(f32(f32(0.1) * f32(m)) * _logf(f)) + f32(1.0)

        a = mscale(1.0) / mscale(log_mul) if log_mul != 0 else mscale(1.0)
        a = f32(a) * (f32(1.0) / (f32(1.0) + f32(0.1) * _logf(f)))
        return float(f32(a) * f32(rope_attn_factor))

    def corr_dims(self, n_rot: int, base: float) -> tuple[float, float]:
        """ggml_rope_yarn_corr_dims: the first and last pair index (over 2) of the ramp, in float32."""
        f32 = np.float32

        def dim(beta: float) -> np.float32:
            turns = f32(self.n_ctx_orig) / f32(f32(f32(beta) * f32(2)) * f32(math.pi))
            return f32(f32(n_rot) * _logf(turns)) / f32(f32(2) * _logf(f32(base)))

        start, end = np.floor(dim(self.beta_fast)), np.ceil(dim(self.beta_slow))
        return float(max(f32(0), start)), float(min(f32(n_rot - 1), end))


@njit(cache=True)
def _logf(x):
    """libm's logf (numpy's float32 log may round differently)."""
    return np.log(x)


@njit(cache=True)
def _yarn_mix(theta, freq_scale, low, high, ext_factor):
    """rope_yarn's angles in place: theta (the unscaled angles, per position and pair) -> fma(theta * freq_scale,
    1 - mix, theta * mix) with mix = ramp(pair) * ext_factor, as GCC contracts ggml's expression."""
    for i in range(theta.shape[1]):
        y = (np.float32(i) - low) / max(np.float32(0.001), high - low)  # i = i0 / 2
        mix = (np.float32(1.0) - min(np.float32(1.0), max(np.float32(0.0), y))) * ext_factor
        for p in range(theta.shape[0]):
            extrap = theta[p, i]
            theta[p, i] = fma32(freq_scale * extrap, np.float32(1.0) - mix, extrap * mix)


@njit(cache=True)
def _yarn_mscale(attn_factor, freq_scale):
    """rope_yarn's magnitude: attn_factor * (1 + 0.1 logf(1 / freq_scale)), contracted to an FMA in ggml-cpu."""
    return attn_factor * fma32(np.float32(0.1), np.log(np.float32(1.0) / freq_scale), np.float32(1.0))


class RopeTable:
    """cos/sin (float32) for positions [0, n_ctx), computed once as ggml_rope_cache_init does."""

    def __init__(self, n_rot: int, base: float, n_ctx: int, neox: bool, freq_scale: float = 1.0,
                 freq_factors: np.ndarray | None = None, yarn: Yarn | None = None, attn_factor: float = 1.0):
        """`freq_factors` (n_rot/2 float32, a GGUF's rope_freqs.weight: llama 3.x's rope scaling, or phi3's
        LongRoPE factors) divide each pair's angle before the frequency scale, as ggml_rope_ext's freq_factors.
        `yarn`: YaRN extension (its own attention factor); else cos and sin are times `attn_factor`
        (rope.scaling.attn_factor)."""
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
        if yarn is not None and yarn.ext_factor != 0:
            low, high = yarn.corr_dims(n_rot, base)
            _yarn_mix(theta, np.float32(freq_scale), np.float32(low), np.float32(high), np.float32(yarn.ext_factor))
            mscale = _yarn_mscale(np.float32(yarn.attn_factor), np.float32(freq_scale))
        else:
            theta *= np.float32(freq_scale)
            mscale = np.float32(yarn.attn_factor if yarn is not None else attn_factor)
        self.cos = np.empty_like(theta)  # (n_ctx, n_rot/2)
        self.sin = np.empty_like(theta)
        _cos_sin(theta, self.cos, self.sin)
        if mscale != 1:
            self.cos *= mscale
            self.sin *= mscale

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
