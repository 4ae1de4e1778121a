"""Rounding float32 values to float16 precision, inside numba kernels.

llama.cpp keeps the KV cache and some accumulators in f16; reproducing that rounding is what keeps our
greedy tokens equal to llama.cpp's on small models, whose logits are sensitive to it.
These functions are compiled without fastmath on purpose: fastmath may fold the rounding away.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_TWO_24 = np.float32(2.0**24)
_TWO_M24 = np.float32(2.0**-24)


@njit(cache=True, nogil=True, inline="always")
def round_f16_bits(u: np.uint32) -> np.uint32:
    """Round-to-nearest-even of an f32 bit pattern to f16's 10 mantissa bits (normal f16 range)."""
    return (u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)


@njit(cache=True, nogil=True)
def round_f16_inplace(a: np.ndarray) -> None:
    """a (float32, 1-D, contiguous) <- float32(float16(a)), for |a| below f16's maximum (65504)."""
    round_f16_view(a, a.view(np.uint32))


@njit(cache=True, nogil=True, inline="always")
def round_f16_view(a: np.ndarray, u: np.ndarray) -> None:
    """round_f16_inplace with `u`, the uint32 view of `a`, made once by the caller (a view per call costs
    more than the rounding). Two branch-free passes that LLVM vectorizes: the bit trick for normal f16
    values, then multiples of 2^-24 for f16's subnormal range. (Overflow to inf is not reproduced: the
    values rounded here, attention accumulators and queries, stay far below 65504.)"""
    for i in range(a.shape[0]):
        normal = (u[i] & np.uint32(0x7FFFFFFF)) >= np.uint32(0x38800000)  # |a| >= 2^-14
        u[i] = round_f16_bits(u[i]) if normal else u[i]
    for i in range(a.shape[0]):
        x = a[i]
        a[i] = np.float32(np.rint(x * _TWO_24)) * _TWO_M24 if abs(x) < np.float32(2.0**-14) else x


def to_f16_precision(x: np.ndarray) -> np.ndarray:
    """numpy version for arrays outside kernels (exact: numpy's float16 cast rounds to nearest even)."""
    return x.astype(np.float16).astype(np.float32)
