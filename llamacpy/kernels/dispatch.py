"""One entry point over every quantized type's row kernels, for numba code that mixes weight types
(the fused decode step of `models/llama_step.py`): `rows_dot(kind, ...)` branches on a small integer.

Activations come in all three vec_dot formats at once (`Q8Buffers`): Q8_0 and Q8_1 share q and d and
differ in s (int32 block sums / f16(d * sum)); Q8_K has its own q, d and int16 bsums. Only the formats
some weight of a step needs are filled.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import errors, njit, types
from numba.extending import overload, typeof_impl

from ..gguf import GGMLType
from . import iq4_nl, iq4_xs, mxfp4, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0
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


# each kind's row kernel, as called by `rows_dot` (q8: the Q8_0 / Q8_1 formats' q, d and s0 or s1; K: Q8_K's)
CALLS = {
    0: "q4_0.rows(data, q, d, s0, out, r, r1)", 1: "q4_0.rows_repack(data, q, d, s0, out, r, r1)",
    2: "q4_1.rows(data, q, d, s1, out, r, r1)", 3: "q5_0.rows(data, q, d, s0, out, r, r1)",
    4: "q5_1.rows(data, q, d, s1, out, r, r1)", 5: "q8_0.rows(data, q, d, s0, out, r, r1)",
    6: "q2_k.rows(data, qk, dk, sk, out, r, r1)", 7: "q2_k.rows_repack(data, qk, dk, sk, out, r, r1)",
    8: "q3_k.rows(data, qk, dk, sk, out, r, r1)", 9: "q4_k.rows(data, qk, dk, sk, out, r, r1)",
    10: "q4_k.rows_repack(data, qk, dk, sk, out, r, r1)", 11: "q5_k.rows(data, qk, dk, sk, out, r, r1)",
    12: "q6_k.rows(data, qk, dk, sk, out, r, r1)", 13: "q4_0.rows_repack_gemv(data, q, d, s0, out, r, r1)",
    14: "q2_k.rows_repack_gemv(data, qk, dk, sk, out, r, r1)",
    15: "q4_k.rows_repack_gemv(data, qk, dk, sk, out, r, r1)",
    16: "iq4_nl.rows(data, q, d, s0, out, r, r1)", 17: "iq4_nl.rows_repack(data, q, d, s0, out, r, r1)",
    18: "mxfp4.rows(data, q, d, s0, out, r, r1)", 19: "mxfp4.rows_repack(data, q, d, s0, out, r, r1)",
    20: "iq4_xs.rows(data, qk, dk, sk, out, r, r1)", 21: "iq4_nl.rows_repack_gemv(data, q, d, s0, out, r, r1)",
    22: "mxfp4.rows_repack_gemv(data, q, d, s0, out, r, r1)",
}  # fmt: skip
_MODULES = {"q4_0": q4_0, "q4_1": q4_1, "q5_0": q5_0, "q5_1": q5_1, "q8_0": q8_0, "q2_k": q2_k, "q3_k": q3_k,
            "q4_k": q4_k, "q5_k": q5_k, "q6_k": q6_k, "iq4_nl": iq4_nl, "iq4_xs": iq4_xs, "mxfp4": mxfp4}


class KindSet(int):
    """A set of kinds as a bit mask that numba types as a literal (`typeof` below), so a jitted function taking
    one is compiled, and cached, once per set: no `numba.literally`, which re-enters the compiler on every
    call from Python with a plain int."""


@typeof_impl.register(KindSet)
def _typeof_kind_set(val, c):
    return types.literal(int(val))


def kind_set(kinds) -> KindSet:
    """The `rows_dot` kind set that covers these kinds."""
    mask = 0
    for k in kinds:
        mask |= 1 << int(k)
    return KindSet(mask)


def rows_dot(kset, kind, data, q, d, s0, s1, qk, dk, sk, out, r, r1):
    """out[:, r:r1] = weight rows [r, r1) of a `kind` matrix times the activation rows (see module doc), for
    numba code: `kset` (a `KindSet`) names the kinds that may come. Only their kernels are compiled
    into the caller: one branch over all 23 made every first start compile (and LLVM re-optimize, at each
    level that inlines it) every kernel, 100+ s of a cold start for a model that uses two."""
    raise TypeError("rows_dot is called from numba code only")


@functools.cache
def _rows_dot_impl(mask: int):
    """`rows_dot` for one kind set: a branch over just its kernels, written from `CALLS`."""
    kinds = [k for k in CALLS if mask >> k & 1]
    if not kinds or mask >> (max(CALLS) + 1):
        raise errors.TypingError(f"rows_dot: kind set {mask:#x} names no kernel or unknown ones")
    body = "".join(f"    {'if' if i == 0 else 'elif'} kind == {k}:\n        {CALLS[k]}\n"
                   for i, k in enumerate(kinds[:-1]))
    last = f"    else:\n        {CALLS[kinds[-1]]}\n" if len(kinds) > 1 else f"    {CALLS[kinds[0]]}\n"
    source = "def impl(kset, kind, data, q, d, s0, s1, qk, dk, sk, out, r, r1):\n" + body + last
    scope = dict(_MODULES)
    exec(compile(source, f"<rows_dot {mask:#x}>", "exec"), scope)  # noqa: S102 - our own table's text
    return scope["impl"]


@overload(rows_dot)
def _rows_dot_for(kset, kind, data, q, d, s0, s1, qk, dk, sk, out, r, r1):
    if not isinstance(kset, types.IntegerLiteral):
        return None  # numba tries overloads without literals first; the literal comes next
    return _rows_dot_impl(kset.literal_value)


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
