"""Rotary position embeddings, in ggml's two layouts.

NORM (llama): rotates adjacent pairs (x[2i], x[2i+1]). NEOX (qwen2, gemma3): rotates (x[i], x[i + n_rot/2]).
theta_i = pos * base^(-2i / n_rot) * freq_scale, as ggml_rope_ext with no context extension.
"""

from __future__ import annotations

import numpy as np


class RopeTable:
    """cos/sin for positions [0, n_ctx), computed once in float64 and kept as float32."""

    def __init__(self, n_rot: int, base: float, n_ctx: int, neox: bool, freq_scale: float = 1.0):
        self.n_rot, self.neox = n_rot, neox
        inv_freq = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
        angles = np.arange(n_ctx, dtype=np.float64)[:, None] * freq_scale * inv_freq[None, :]
        self.cos = np.cos(angles).astype(np.float32)  # (n_ctx, n_rot/2)
        self.sin = np.sin(angles).astype(np.float32)

    def apply(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: (T, n_heads, head_dim) float32, positions: (T,) -> rotated copy."""
        cos = self.cos[positions][:, None, :]  # (T, 1, n_rot/2)
        sin = self.sin[positions][:, None, :]
        r = self.n_rot
        out = x.copy()
        if self.neox:
            half = r // 2
            x0, x1 = x[..., :half], x[..., half:r]
            out[..., :half] = x0 * cos - x1 * sin
            out[..., half:r] = x0 * sin + x1 * cos
        else:
            x0, x1 = x[..., 0:r:2], x[..., 1:r:2]
            out[..., 0:r:2] = x0 * cos - x1 * sin
            out[..., 1:r:2] = x0 * sin + x1 * cos
        return out
