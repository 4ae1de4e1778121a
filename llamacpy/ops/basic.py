"""Norms and activations (float32, vectorized over the leading axes)."""

from __future__ import annotations

import numpy as np


def rms_norm(x: np.ndarray, weight: np.ndarray | None, eps: float) -> np.ndarray:
    """ggml_rms_norm then multiply by weight, over the last axis, with ggml's rounding steps:
    sum of f32 squares in f64, scale = 1/sqrtf(f32(mean + eps)), y = (x * scale) * w in f32.
    (Downstream activation quantization turns any last-bit difference here into visible noise.)"""
    sq = x * x
    mean = np.sum(sq, axis=-1, dtype=np.float64) / x.shape[-1]
    scale = np.float32(1.0) / np.sqrt((mean + np.float64(np.float32(eps))).astype(np.float32))
    y = x * scale[..., None]
    return y * weight if weight is not None else y


def silu(x: np.ndarray) -> np.ndarray:
    return x / (np.float32(1.0) + np.exp(-x))


_GELU_C = np.float32(np.sqrt(2.0 / np.pi))


def _gelu_exact_tanh(x: np.ndarray) -> np.ndarray:
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(_GELU_C * x * (np.float32(1.0) + np.float32(0.044715) * x * x)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU (tanh approximation) the way ggml's CPU backend computes it: through a table over f16
    inputs with f16 results (GGML_GELU_FP16), x for x >= 10 and 0 for x <= -10. Matching the rounding
    keeps greedy outputs equal to llama.cpp's."""
    y = _gelu_exact_tanh(x.astype(np.float16).astype(np.float32)).astype(np.float16).astype(np.float32)
    y = np.where(x >= 10.0, x, y)
    return np.where(x <= -10.0, np.float32(0.0), y)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)
