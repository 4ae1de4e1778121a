"""The grid and ternary types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0) through
gguf-py's numpy dequantizers: a file holding them runs, without kernels of its own.

These types are rare on the hub next to the K-quants and IQ4 (issue 11 asks fast kernels of IQ4_NL, IQ4_XS and
MXFP4 only), so gguf-py's implementation, checked against ggml by its maintainers, is used as it is: rows are
dequantized in chunks to f32 and multiplied with BLAS. Two costs, stated where a model loads (`weight.py`):
every product dequantizes the rows again (slow: decode speed is that of the dequantizer), and the products are
f32 ones, not ggml's integer dot products against Q8_K activations (close to llama.cpp's logits, not equal).
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType, quants

from ..gguf import BLOCK_LAYOUT, GGMLType
from .registry import register

TYPES = (GGMLType.IQ1_S, GGMLType.IQ1_M, GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ3_XXS,
         GGMLType.IQ3_S, GGMLType.TQ1_0, GGMLType.TQ2_0)
CHUNK_ELEMS = 1 << 20  # f32 values dequantized at a time (4 MiB)


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

    return dequant_rows, matvec, matmul


for _t in TYPES:
    register(_t, *_kernels(_t))
