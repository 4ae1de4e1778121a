"""y = W x the way llama.cpp's CPU backend computes it for quantized W.

ggml does not multiply quantized weights by f32 activations: it first quantizes each activation row to
the weight type's "vec_dot_type" (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants)
and then takes integer dot products. That rounding (about 1/254 of each block's largest value) moves
the logits of small models by tenths of a nat, enough to change greedy outputs. So before the fused
kernels run, each activation row is replaced by its round trip through that format:

- Q8_0: per 32 values, d = amax/127 (stored f16), q = round_half_even(x * 127/amax)  ->  x' = f16(d) * q
- Q8_1: as Q8_0, plus s = f16(d * sum(q)), which ggml multiplies by each weight block's min m; with
  x' alone that term would be f16(d) * sum(q), so the difference (s - f16(d) sum(q)) * m is added.
- Q8_K: per 256 values, max = the value of largest magnitude, iscale = -127/max,
  q = min(127, round_half_even(iscale * x)), d = 1/iscale (f32)  ->  x' = d * q

Then W_deq @ x' equals ggml's integer arithmetic up to float32 summation order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..gguf import GGMLType
from ..kernels import WeightMatrix
from .f16 import round_f16_inplace

_Q8_0_TYPES = {GGMLType.Q4_0, GGMLType.Q5_0, GGMLType.Q8_0}
_Q8_1_TYPES = {GGMLType.Q4_1, GGMLType.Q5_1}
_Q8_K_TYPES = {GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K}
# byte offset of the f16 block minimum `m` inside Q4_1 / Q5_1 blocks (after the f16 scale d)
_MIN_OFFSET = {GGMLType.Q4_1: 2, GGMLType.Q5_1: 2}


@njit(cache=True, nogil=True)
def _round_trip_q8_0(X, out, corr):
    """X (T, n) -> out = Q8_0 round trip; corr (T, n/32) = f16(d*sum q) - f16(d)*sum q (the Q8_1 term)."""
    T, n = X.shape
    nb = n // 32
    d = np.empty(nb, np.float32)
    d16 = np.empty(nb, np.float32)
    s16 = np.empty(nb, np.float32)
    qsum = np.empty(nb, np.float32)
    for t in range(T):
        for b in range(nb):
            amax = np.float32(0.0)
            for j in range(32):
                amax = max(amax, abs(X[t, b * 32 + j]))
            d[b] = amax / np.float32(127.0)
            inv = np.float32(127.0) / amax if amax != 0 else np.float32(0.0)
            s = np.float32(0.0)
            for j in range(32):
                q = np.float32(np.rint(X[t, b * 32 + j] * inv))
                s += q
                out[t, b * 32 + j] = q  # scaled below, once f16(d) is known
            qsum[b] = s
            s16[b] = d[b] * s
        d16[:] = d
        round_f16_inplace(d16)
        round_f16_inplace(s16)
        for b in range(nb):
            for j in range(32):
                out[t, b * 32 + j] *= d16[b]
            corr[t, b] = s16[b] - d16[b] * qsum[b]


@njit(cache=True, nogil=True)
def _round_trip_q8_k(X, out):
    T, n = X.shape
    for t in range(T):
        for b in range(n // 256):
            amax = np.float32(0.0)
            vmax = np.float32(0.0)
            for j in range(256):
                a = abs(X[t, b * 256 + j])
                if a > amax:
                    amax = a
                    vmax = X[t, b * 256 + j]
            if amax == 0:
                for j in range(256):
                    out[t, b * 256 + j] = 0.0
                continue
            iscale = np.float32(-127.0) / vmax
            d = np.float32(1.0) / iscale
            for j in range(256):
                q = min(np.float32(127.0), np.float32(np.rint(iscale * X[t, b * 256 + j])))
                out[t, b * 256 + j] = d * q


class Linear:
    """A weight matrix with llama.cpp's activation rounding; `linear(x)` takes x (T, n_in)."""

    def __init__(self, w: WeightMatrix, bias: np.ndarray | None = None):
        self.w, self.bias = w, bias
        self.kind = ("q8_0" if w.type in _Q8_0_TYPES else "q8_1" if w.type in _Q8_1_TYPES
                     else "q8_k" if w.type in _Q8_K_TYPES else None)
        self._mins = None

    @property
    def n_out(self) -> int:
        return self.w.n_out

    def _block_mins(self) -> np.ndarray:
        """(n_out, n_in/32) f32 block minimums of a Q4_1/Q5_1 weight, read once from the blocks."""
        if self._mins is None:
            off = _MIN_OFFSET[self.w.type]
            blocks = self.w.data.reshape(self.w.n_out, self.w.n_in // 32, -1)
            self._mins = np.ascontiguousarray(blocks[:, :, off:off + 2]).view(np.float16)[:, :, 0].astype(np.float32)
        return self._mins

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (T, n_in) -> (T, n_out)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        corr = None
        if self.kind in ("q8_0", "q8_1"):
            xq = np.empty_like(x)
            corr = np.empty((x.shape[0], x.shape[1] // 32), np.float32)
            _round_trip_q8_0(x, xq, corr)
            x = xq
        elif self.kind == "q8_k":
            xq = np.empty_like(x)
            _round_trip_q8_k(x, xq)
            x = xq
        y = self.w.matvec(x[0])[None, :] if x.shape[0] == 1 else self.w.matmul(x)
        if self.kind == "q8_1":
            y += corr @ self._block_mins().T
        if self.bias is not None:
            y += self.bias
        return y
