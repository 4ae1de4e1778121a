"""Shared pieces of the numba kernels: compile options, the f16 table, row chunking, dot products."""

from __future__ import annotations

import numpy as np
from numba import njit

# Reference dequantization must round exactly like numpy (no FMA contraction), so it is compiled
# without fastmath; the fused dot-product kernels reorder sums freely.
EXACT = {"cache": True, "nogil": True}
EXACT_PAR = {"cache": True, "nogil": True, "parallel": True}
FAST = {"cache": True, "nogil": True, "fastmath": True}
FAST_PAR = {"cache": True, "nogil": True, "fastmath": True, "parallel": True}

# Rows per parallel work item of a GEMV: small enough to balance two cores, large enough to amortize.
CHUNK = 16

# IEEE half -> float32 for every bit pattern, as numpy converts it (NaN payloads included).
# Kernels read a block's f16 scale as F16_TO_F32[lo | hi << 8]: one L1/L2 hit per block.
F16_TO_F32 = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
F16_TO_F32.flags.writeable = False


@njit(**EXACT)
def f16_at(row, pos, f16):
    """The little-endian IEEE half at byte `pos` of `row`, as float32."""
    return f16[np.int64(row[pos]) | (np.int64(row[pos + 1]) << 8)]


@njit(**FAST)
def bit_sums(x, scale):
    """S[g, v] = scale * (sum of x[8g + k] over the set bits k of byte v), for g < len(x) // 8.

    The 5th bits of Q5_0/Q5_1 weights select which x to add; looking up four bytes of qh per block in
    this table replaces 32 per-lane bit extractions, which numba widens to int64 and will not vectorize.
    """
    ng = x.shape[0] // 8
    S = np.empty((ng, 256), np.float32)
    for g in range(ng):
        S[g, 0] = 0.0
        for k in range(8):
            step = 1 << k
            xv = scale * x[g * 8 + k]
            for u in range(step):
                S[g, step + u] = S[g, u] + xv
    return S


@njit(**FAST)
def dot(a, b):
    """sum(a * b); with fastmath LLVM vectorizes the reduction with several vector accumulators."""
    s = np.float32(0.0)
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


@njit(**FAST)
def block_sums(x, bs):
    """Sums of x over consecutive blocks of `bs` elements (the `m * sum(x)` term of offset quants)."""
    nb = x.shape[0] // bs
    out = np.empty(nb, np.float32)
    for b in range(nb):
        s = np.float32(0.0)
        for j in range(bs):
            s += x[b * bs + j]
        out[b] = s
    return out
