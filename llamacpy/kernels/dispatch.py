"""One entry point over every quantized type's row kernels, for numba code that mixes weight types
(the fused decode step of `models/llama_step.py`): `rows_dot(kind, ...)` branches on a small integer.

Activations come in all three vec_dot formats at once (`Q8Buffers`): Q8_0 and Q8_1 share q and d and
differ in s (int32 block sums / f16(d * sum)); Q8_K has its own q, d and int16 bsums. Only the formats
some weight of a step needs are filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..gguf import GGMLType
from . import iq4_nl, iq4_xs, mxfp4, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0
from ._common import FAST
from .q8 import _q8_0_block, _q8_k_row, round_to_half

# kind codes: (type, repacked arithmetic) -> int
KINDS = {
    (GGMLType.Q4_0, False): 0, (GGMLType.Q4_0, True): 1, (GGMLType.Q4_1, False): 2, (GGMLType.Q5_0, False): 3,
    (GGMLType.Q5_1, False): 4, (GGMLType.Q8_0, False): 5, (GGMLType.Q2_K, False): 6, (GGMLType.Q2_K, True): 7,
    (GGMLType.Q3_K, False): 8, (GGMLType.Q4_K, False): 9, (GGMLType.Q4_K, True): 10, (GGMLType.Q5_K, False): 11,
    (GGMLType.Q6_K, False): 12, (GGMLType.IQ4_NL, False): 16, (GGMLType.IQ4_NL, True): 17,
    (GGMLType.MXFP4, False): 18, (GGMLType.MXFP4, True): 19, (GGMLType.IQ4_XS, False): 20,
}  # fmt: skip
# the repacked kinds computed row by row as a one-row step does (`rows_repack_gemv`): a chunk whose rows
# must each get the logits of one-row decoding (checking a draft); no llama.cpp counterpart, so no KINDS key
ROW_EXACT = {1: 13, 7: 14, 10: 15, 17: 21, 19: 22}
# which activation format each kind reads: 0 = Q8_0, 1 = Q8_1, 2 = Q8_K
FORMATS = {GGMLType.Q8_0: 0, GGMLType.Q8_1: 1, GGMLType.Q8_K: 2}


@njit(**FAST)
def rows_dot(kind, data, q, d, s0, s1, qk, dk, sk, out, r, r1):
    """out[:, r:r1] = weight rows [r, r1) of a `kind` matrix times the activation rows (see module doc)."""
    if kind == 0:
        q4_0.rows(data, q, d, s0, out, r, r1)
    elif kind == 1:
        q4_0.rows_repack(data, q, d, s0, out, r, r1)
    elif kind == 2:
        q4_1.rows(data, q, d, s1, out, r, r1)
    elif kind == 3:
        q5_0.rows(data, q, d, s0, out, r, r1)
    elif kind == 4:
        q5_1.rows(data, q, d, s1, out, r, r1)
    elif kind == 5:
        q8_0.rows(data, q, d, s0, out, r, r1)
    elif kind == 6:
        q2_k.rows(data, qk, dk, sk, out, r, r1)
    elif kind == 7:
        q2_k.rows_repack(data, qk, dk, sk, out, r, r1)
    elif kind == 8:
        q3_k.rows(data, qk, dk, sk, out, r, r1)
    elif kind == 9:
        q4_k.rows(data, qk, dk, sk, out, r, r1)
    elif kind == 10:
        q4_k.rows_repack(data, qk, dk, sk, out, r, r1)
    elif kind == 11:
        q5_k.rows(data, qk, dk, sk, out, r, r1)
    elif kind == 12:
        q6_k.rows(data, qk, dk, sk, out, r, r1)
    elif kind == 13:
        q4_0.rows_repack_gemv(data, q, d, s0, out, r, r1)
    elif kind == 14:
        q2_k.rows_repack_gemv(data, qk, dk, sk, out, r, r1)
    elif kind == 15:
        q4_k.rows_repack_gemv(data, qk, dk, sk, out, r, r1)
    elif kind == 16:
        iq4_nl.rows(data, q, d, s0, out, r, r1)
    elif kind == 17:
        iq4_nl.rows_repack(data, q, d, s0, out, r, r1)
    elif kind == 18:
        mxfp4.rows(data, q, d, s0, out, r, r1)
    elif kind == 19:
        mxfp4.rows_repack(data, q, d, s0, out, r, r1)
    elif kind == 20:
        iq4_xs.rows(data, qk, dk, sk, out, r, r1)
    elif kind == 21:
        iq4_nl.rows_repack_gemv(data, q, d, s0, out, r, r1)
    else:
        mxfp4.rows_repack_gemv(data, q, d, s0, out, r, r1)


@njit(cache=True, nogil=True)
def quantize_rows(x, need, q, d, s0, s1, qk, dk, sk):
    """x (T, n) f32 into the formats flagged in need (3 booleans: Q8_0, Q8_1, Q8_K), as `q8.quantize`."""
    for t in range(x.shape[0]):
        if need[0] or need[1]:
            for b in range(x.shape[1] // 32):
                db, total = _q8_0_block(x[t], q[t], b * 32)
                d[t, b] = round_to_half(db)
                s0[t, b] = total
                s1[t, b] = round_to_half(db * np.float32(total))
        if need[2]:
            _q8_k_row(x[t], qk[t], dk[t], sk[t])


@dataclass
class Q8Buffers:
    """Scratch for T rows of n activations in the three formats (allocated once per shape)."""

    q: np.ndarray
    d: np.ndarray
    s0: np.ndarray
    s1: np.ndarray
    qk: np.ndarray
    dk: np.ndarray
    sk: np.ndarray

    @classmethod
    def empty(cls, T: int, n: int) -> Q8Buffers:
        nk = n // 256 if n % 256 == 0 else 0  # Q8_K needs whole super-blocks
        return cls(np.empty((T, n), np.int8), np.empty((T, n // 32), np.float32), np.empty((T, n // 32), np.int32),
                   np.empty((T, n // 32), np.float32), np.empty((T, n if nk else 0), np.int8),
                   np.empty((T, nk), np.float32), np.empty((T, nk * 16), np.int16))
