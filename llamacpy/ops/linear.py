"""y = x W^T (+ bias) the way llama.cpp's CPU backend computes it for quantized W.

ggml quantizes each activation row to the weight type's vec_dot type (Q8_0, Q8_1 or Q8_K) and takes
integer dot products; that rounding (about 1/254 of each block's largest value) moves the logits of
small models by tenths of a nat, enough to change greedy outputs, so we do the same. The quantizers and
kernels live in `kernels` (`q8.py`, `simd.py`); `Activations` lets several projections of the same rows
(q/k/v, gate/up) share one quantization.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..kernels import Activations, WeightMatrix
from .lora import LoraRows, delta

# Sees the f32 input rows of every product: observer(weight name, x (T, n_in), expert, n_expert), expert -1 for a
# dense weight; for a 3-D expert tensor the rows one expert multiplies (`llamacpy imatrix`, engine/imatrix.py).
Observer = Callable[[str, np.ndarray, int, int], None]


class Linear:
    """A weight matrix with llama.cpp's activation rounding; `linear(x)` takes x (T, n_in) or Activations."""

    observer: Observer | None = None  # class-wide: set while an importance matrix is collected

    def __init__(self, w: WeightMatrix, bias: np.ndarray | None = None):
        self.w, self.bias = w, bias
        self.lora: tuple = ()  # (LoraWeight, scale) pairs added to the product (ops/lora.py, models/lora.py)
        self.lora_rows: LoraRows | None = None  # the rows' sequences, for the adapters' float order

    @property
    def n_out(self) -> int:
        return self.w.n_out

    def __call__(self, x: np.ndarray | Activations) -> np.ndarray:
        """x (T, n_in) -> (T, n_out)."""
        if Linear.observer is not None:
            Linear.observer(self.w.name, x.x if isinstance(x, Activations) else x, -1, 1)
        y = self.w.mul(x)
        if self.lora:
            rows = x.x if isinstance(x, Activations) else np.asarray(x, dtype=np.float32)
            counts = self.lora_rows.counts if self.lora_rows is not None else None
            for w, scale in self.lora:
                y += delta(rows, w, scale, counts)
        if self.bias is not None:
            y += self.bias
        return y
