"""The grid and ternary types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0) through
gguf-py's numpy dequantizers: a file holding them runs, without kernels of its own.

These types are rare on the hub next to the K-quants and IQ4 (issue 11 asks fast kernels of IQ4_NL, IQ4_XS and
MXFP4 only), so gguf-py's implementation, checked against ggml by its maintainers, is used as it is: rows are
dequantized in chunks to f32 and multiplied with BLAS. The activations are first rounded as ggml rounds them
for these types (Q8_K, `vec_dot`): an integer dot product of the weights' codes with Q8_K values, times the
scales, is the f32 product of the dequantized weights with d * q, up to the order of the float sums; so the
logits are llama.cpp's up to float order (a flipped Q8 rounding now and then: the tiny `llama-<type>` models of
test_arch_recordings.py are compared teacher-forced, not bit for bit). The cost, stated where a model loads
(`weight.py`): every product dequantizes the rows again, and decode runs at the dequantizer's speed.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType, quants

from ..gguf import BLOCK_LAYOUT, GGMLType
from .registry import register

TYPES = (GGMLType.IQ1_S, GGMLType.IQ1_M, GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ3_XXS,
         GGMLType.IQ3_S, GGMLType.TQ1_0, GGMLType.TQ2_0)
CHUNK_ELEMS = 1 << 20  # f32 values dequantized at a time (4 MiB)
QK_K = 256  # values per Q8_K block


def _kernels(qtype: GGMLType):
    gtype = GGMLQuantizationType(int(qtype))
    block_bytes = BLOCK_LAYOUT[qtype][1]

    def rows_f32(data: np.ndarray) -> np.ndarray:
        n_in = data.shape[1] // block_bytes * BLOCK_LAYOUT[qtype][0]
        return quants.dequantize(np.asarray(data), gtype).reshape(data.shape[0], n_in)

    def chunks(data: np.ndarray):
        n_in = data.shape[1] // block_bytes * BLOCK_LAYOUT[qtype][0]
        step = max(1, CHUNK_ELEMS // max(n_in, 1))
        for r0 in range(0, data.shape[0], step):
            yield r0, rows_f32(data[r0:r0 + step])

    def dequant_rows(data, ids, out, f16):
        out[:] = rows_f32(data[np.asarray(ids)])

    def matvec(data, x, out, f16):
        for r0, w in chunks(data):
            out[r0:r0 + len(w)] = w @ x

    def matmul(data, X, out, f16):
        for r0, w in chunks(data):
            out[:, r0:r0 + len(w)] = X @ w.T

    def vec_dot(data, xq, xd, xs, out):
        T, n = xq.shape
        X = (xq.reshape(T, -1, QK_K).astype(np.float32) * xd.reshape(T, -1, 1)).reshape(T, n)
        matmul(data, X, out, None)

    return dequant_rows, matvec, matmul, vec_dot


for _t in TYPES:
    _dequant, _matvec, _matmul, _vec_dot = _kernels(_t)
    register(_t, _dequant, _matvec, _matmul, _vec_dot, GGMLType.Q8_K)
