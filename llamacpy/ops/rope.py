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
        # ggml's float32 recurrence: theta_0 = pos, theta_{i+1} = theta_i * base^(-2/n_rot); the angles
        # are then rounded the same way as llama.cpp's, so f16 rounding downstream flips the same bits.
        theta_scale = np.float32(np.power(np.float32(base), np.float32(-2.0) / np.float32(n_rot)))
        theta = np.empty((n_ctx, n_rot // 2), np.float32)
        theta[:, 0] = np.arange(n_ctx, dtype=np.float32)
        for i in range(1, n_rot // 2):
            theta[:, i] = theta[:, i - 1] * theta_scale
        theta *= np.float32(freq_scale)
        self.cos = np.cos(theta.astype(np.float64)).astype(np.float32)  # (n_ctx, n_rot/2)
        self.sin = np.sin(theta.astype(np.float64)).astype(np.float32)

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
