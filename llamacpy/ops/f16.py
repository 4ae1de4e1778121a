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
    """a (float32, 1-D, contiguous) <- float32(float16(a)); values past f16's range become +-inf."""
    u = a.view(np.uint32)
    for i in range(a.shape[0]):
        e = (u[i] >> np.uint32(23)) & np.uint32(0xFF)
        if e >= 113 and e < 143:  # |a| in [2^-14, 2^16): normal f16
            r = round_f16_bits(u[i])
            if ((r >> np.uint32(23)) & np.uint32(0xFF)) == 143 or (r & np.uint32(0x7FFFFFFF)) > np.uint32(0x477FE000):
                a[i] = np.inf if a[i] > 0 else -np.inf
            else:
                u[i] = r
        elif e < 113:  # f16 subnormal or zero: a multiple of 2^-24
            a[i] = np.float32(np.rint(a[i] * _TWO_24)) * _TWO_M24
        elif e != 255:
            a[i] = np.inf if a[i] > 0 else -np.inf


def to_f16_precision(x: np.ndarray) -> np.ndarray:
    """numpy version for arrays outside kernels (exact: numpy's float16 cast rounds to nearest even)."""
    return x.astype(np.float16).astype(np.float32)
