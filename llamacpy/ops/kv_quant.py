"""Quantized KV caches (llama-server's `-ctk/-ctv`): keys and values stored as GGML blocks, attended as llama.cpp's
CPU flash attention does when K or V is not F16.

- Storing: a row of K or V (head_dim values) becomes blocks the way ggml's set_rows converts it, with the CPU
  type's `from_float`: the SIMD quantizer for Q8_0 (round half to even, as activations, kernels/q8.py), the
  reference quantizers for Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL (kernels/quantizers.py; IQ4_NL without the scale search
  llama-quantize runs).
- Scores: Q quantized to the K type's vec_dot type (Q8_0 or Q8_1) and multiplied with ggml's integer vec_dot
  (the kernels of the weight types: a cache row of K is a weight row).
- Values: a quantized V row is dequantized to f32 and accumulated in f32 (ggml's VKQ32, `ggml_vec_mad_f32`),
  where an F16 V accumulates in f16 (both in attention.py).

- Rotation: llama.cpp (since its PR 21038) turns each head's vectors by an orthonormal Walsh-Hadamard matrix before
  quantizing them, which spreads outliers over the block: for a quantized K, Q and K by the largest power of two
  (64 or more) dividing head_dim; for a quantized V, V by 64 and the attention output back by the same (H H = I).
  Products are unchanged up to rounding; the quantized blocks are those of the rotated vectors. ggml computes the
  rotation as a fast transform (ggml_compute_forward_fwht): x / sqrt(n), then butterflies u + v, u - v of span
  1, 2, 4 ... n/2, all exact f32 steps, so any order of the lanes gives the same bits. LLAMA_ATTN_ROT_DISABLE=1
  turns it off, as in llama.cpp.

ggml's tiled kernel (prompt batches) takes only F16/F32 caches of one type: any other pair runs the one-chunk
kernel for every row, here as there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..gguf import BLOCK_LAYOUT, GGMLType
from ..kernels._common import F16_TO_F32
from ..kernels.q8 import quantize as quantize_activations
from ..kernels.quantizers import quantize as quantize_ref
from ..kernels.registry import kernels_for

# the cache types of llama-server's -ctk/-ctv that llamacpy holds (llama.cpp also has f32 and bf16)
CACHE_TYPES = {"f16": GGMLType.F16, "q8_0": GGMLType.Q8_0, "q4_0": GGMLType.Q4_0, "q4_1": GGMLType.Q4_1,
               "q5_0": GGMLType.Q5_0, "q5_1": GGMLType.Q5_1, "iq4_nl": GGMLType.IQ4_NL}
ROW_BLOCK = 64  # query rows scored at a time (bounds the scores buffer on long prompts)


def cache_type(name: str | int) -> GGMLType:
    """The GGML type of a -ctk/-ctv value (a name, or llama-cpp-python's type_k/type_v number); ValueError naming
    the allowed ones."""
    if not isinstance(name, str):
        name = GGMLType(name).name if int(name) in GGMLType._value2member_map_ else str(name)
    try:
        return CACHE_TYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unsupported KV cache type {name!r} (allowed: {', '.join(CACHE_TYPES)}; llama.cpp's f32 "
                         "and bf16 caches are not supported here yet)") from None


def row_bytes(qtype: GGMLType, n: int) -> int:
    block_elems, block_bytes = BLOCK_LAYOUT[qtype]
    if n % block_elems:
        raise ValueError(f"a KV cache of {GGMLType(qtype).name} needs a head size that is a multiple of "
                         f"{block_elems}, not {n}")
    return n // block_elems * block_bytes


def rotation(qtype: GGMLType, head_dim: int, keys: bool) -> int:
    """The size of the Walsh-Hadamard rotation llama.cpp applies to a K (keys) or V cache of `qtype` (0: none):
    quantized types only, head sizes that are multiples of 64; 64 for V, for K the largest power of two dividing
    head_dim (llama_kv_cache::build_input_k_rot / build_input_v_rot)."""
    if qtype == GGMLType.F16 or head_dim % 64 or os.environ.get("LLAMA_ATTN_ROT_DISABLE", "0").strip() not in ("", "0"):
        return 0
    n = 64
    while keys and head_dim % (2 * n) == 0:
        n *= 2
    return n


@njit(cache=True, nogil=True, parallel=True)
def _fwht(x, n, scale):
    """In place on every n-element chunk of the rows of x (R, m), ggml_compute_forward_fwht: x * scale, then
    the butterflies."""
    R, m = x.shape
    for job in prange(R * (m // n)):
        r, c = job // (m // n), job % (m // n)
        row = x[r, c * n:(c + 1) * n]
        for j in range(n):
            row[j] = row[j] * scale
        span = 1
        while span < n:
            for i in range(0, n, 2 * span):
                for j in range(span):
                    u, v = row[i + j], row[i + span + j]
                    row[i + j] = u + v
                    row[i + span + j] = u - v
            span *= 2


def hadamard(x: np.ndarray, n: int) -> np.ndarray:
    """x (..., m) f32 with each n-element chunk of its last axis turned by the orthonormal Walsh-Hadamard matrix
    (a new array; m a multiple of n, n a power of two)."""
    out = np.array(x, dtype=np.float32, order="C")
    _fwht(out.reshape(-1, out.shape[-1]), n, np.float32(1.0) / np.sqrt(np.float32(n)))
    return out


@dataclass(frozen=True)
class QuantKV:
    """Rows of a quantized K or V cache: data (n_head_kv, L, row_bytes) u8 of `type` blocks, `dim` values a row,
    held turned by a Walsh-Hadamard rotation of size `rot` (0: none; see `rotation`)."""

    data: np.ndarray
    type: GGMLType
    dim: int
    rot: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape[0], self.data.shape[1], self.dim


def to_blocks(x: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """f32 rows (..., n) -> u8 (..., row_bytes) as ggml's CPU `from_float` of `qtype` writes them."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if qtype != GGMLType.Q8_0:
        return quantize_ref(x, qtype, from_float=True)
    rows = x.reshape(-1, x.shape[-1])
    qr = quantize_activations(rows, GGMLType.Q8_0)  # d already rounded to f16
    nb = rows.shape[1] // 32
    out = np.empty((rows.shape[0], nb, 34), np.uint8)
    out[:, :, :2] = qr.d.astype(np.float16).view(np.uint8).reshape(rows.shape[0], nb, 2)
    out[:, :, 2:] = qr.q.view(np.uint8).reshape(rows.shape[0], nb, 32)
    return out.reshape(*x.shape[:-1], nb * 34)


def to_f32(rows: np.ndarray, qtype: GGMLType, n: int) -> np.ndarray:
    """u8 rows (R, row_bytes) of `qtype` -> f32 (R, n), ggml's to_float (exact products)."""
    rows = _readonly(rows)
    out = np.empty((rows.shape[0], n), np.float32)
    kernels_for(qtype).dequant_rows(rows, np.arange(rows.shape[0]), out, F16_TO_F32)
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    """A C-contiguous read-only view (the kernels are compiled for read-only block arrays)."""
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def key_scores(q: np.ndarray, k: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """q f32 (R, hd) against K rows (L, row_bytes) of `qtype`: (R, L) of ggml's vec_dot(k_row, Q quantized to
    the vec_dot type), unscaled."""
    kern = kernels_for(qtype)
    qr = quantize_activations(q, kern.vec_dot_type)
    out = np.empty((q.shape[0], k.shape[0]), np.float32)
    kern.vec_dot(_readonly(k), qr.q, qr.d, qr.s, out)
    return out
