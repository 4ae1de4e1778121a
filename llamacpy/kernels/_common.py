"""Shared pieces of the numba kernels: compile options, the f16 table, intrinsics, dot products.

numba's on-disk cache (cache=True) keys each kernel on its own source file only: after editing this
module, delete llamacpy/kernels/__pycache__/*.nbi / *.nbc (or touch the type modules), or kernels that
inline these helpers keep running the old code.

Formulations that LLVM vectorizes from numba (measured, see the commits): accumulators indexed only by an
unrolled lane loop (kept in registers), integer values truncated to uint8 before float conversion (numba
widens integer ops to int64), uniform shifts or per-lane constant masks (never a shift by the lane index),
float32 constants (a bare int literal promotes to float64).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Reference dequantization must round exactly like numpy (no FMA contraction), so it is compiled
# without fastmath; the fused dot-product kernels reorder sums freely.
EXACT = {"cache": True, "nogil": True}
EXACT_PAR = {"cache": True, "nogil": True, "parallel": True}
# Row dequantizers are inlined into the prange bodies and loop over slices (runtime trip counts), which
# LLVM vectorizes behind runtime alias checks; separately compiled or fully unrolled, they stayed scalar.
EXACT_INLINE = {"cache": True, "nogil": True, "inline": "always"}
FAST = {"cache": True, "nogil": True, "fastmath": True}
FAST_PAR = {"cache": True, "nogil": True, "fastmath": True, "parallel": True}

# Rows per parallel work item of a GEMV: small enough to balance two cores, large enough to amortize.
CHUNK = 16

# GEMVs prefetch this many bytes ahead of the row they work on. The hardware prefetcher stops at 4 KiB
# page boundaries of the memory map; without this a cold pass over a model runs ~40% slower than a hot one.
PREFETCH_AHEAD = 2048

# IEEE half -> float32 for every bit pattern, as numpy converts it (NaN payloads included).
# Kernels read a block's f16 scale as F16_TO_F32[lo | hi << 8]: one L1/L2 hit per block.
F16_TO_F32 = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
F16_TO_F32.flags.writeable = False


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the cache line holding arr[idx] into all cache levels (llvm.prefetch: never faults)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@intrinsic
def half_to_float(typingctx, bits):
    """IEEE half (given as its uint16 bits) -> float32 by LLVM's fpext (vcvtph2ps with F16C; vectorizes).

    Exact for every finite and infinite value; NaNs come back quieted, so exact paths use F16_TO_F32.
    """
    if not isinstance(bits, types.Integer) or bits.bitwidth != 16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def round_to_half(typingctx, x):
    """float32 -> the nearest IEEE half (ties to even, subnormals and overflow included) -> float32,
    by LLVM's fptrunc/fpext (vcvtps2ph/vcvtph2ps with F16C): numpy's float16 cast, one value at a time."""
    if not isinstance(x, types.Float) or x.bitwidth != 32:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(x), codegen


@intrinsic
def half_bits(typingctx, x):
    """float32 -> the bits (uint16) of the nearest IEEE half (ties to even), as GGML_CPU_FP32_TO_FP16."""
    if not isinstance(x, types.Float) or x.bitwidth != 32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(x), codegen


@intrinsic
def pow2(typingctx, n):
    """2**n for an integral float32 n in [-126, 127], exactly, by building the exponent bits (vectorizes)."""
    if not isinstance(n, types.Float) or n.bitwidth != 32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(n), codegen


@intrinsic
def fma32(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma: vfmadd where the CPU has FMA), as ggml's SIMD code computes."""
    if not all(isinstance(v, types.Float) and v.bitwidth == 32 for v in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(a, b, c), codegen


@njit(**FAST, inline="always")
def prefetch_row(data, r):
    """Prefetch the bytes PREFETCH_AHEAD past the start of row r of the 2-D block array `data`."""
    rb = data.shape[1]
    flat = data.reshape(-1)
    start = r * rb + PREFETCH_AHEAD
    end = min(start + rb, flat.shape[0])
    for p in range(start, end, 64):
        prefetch(flat, p)


@njit(**EXACT)
def f16_at(row, pos, f16):
    """The little-endian IEEE half at byte `pos` of `row`, as float32."""
    return f16[np.int64(row[pos]) | (np.int64(row[pos + 1]) << 8)]


@njit(**FAST)
def small_gemm(W, X, out, r0):
    """out[t, r0 + k] = W[k] . X[t]: a dequantized row chunk W (R, n) times a few inputs X (T, n).

    Register tiles of 4 rows x 4 inputs (16 vectorized reductions, 8 loads per 16 FMAs); leftover
    inputs go 4 rows x 1, leftover rows one dot at a time.
    """
    R, T, n = W.shape[0], X.shape[0], W.shape[1]
    k = 0
    while k + 4 <= R:
        w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
        t = 0
        while t + 4 <= T:
            x0, x1, x2, x3 = X[t], X[t + 1], X[t + 2], X[t + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0.0)
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.float32(0.0)
            for j in range(n):
                a0, a1, a2, a3 = w0[j], w1[j], w2[j], w3[j]
                b0, b1, b2, b3 = x0[j], x1[j], x2[j], x3[j]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            out[t, r0 + k : r0 + k + 4] = (s00, s10, s20, s30)
            out[t + 1, r0 + k : r0 + k + 4] = (s01, s11, s21, s31)
            out[t + 2, r0 + k : r0 + k + 4] = (s02, s12, s22, s32)
            out[t + 3, r0 + k : r0 + k + 4] = (s03, s13, s23, s33)
            t += 4
        while t < T:
            xt = X[t]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for j in range(n):
                v = xt[j]
                s0 += w0[j] * v
                s1 += w1[j] * v
                s2 += w2[j] * v
                s3 += w3[j] * v
            out[t, r0 + k : r0 + k + 4] = (s0, s1, s2, s3)
            t += 1
        k += 4
    for kk in range(k, R):
        for t in range(T):
            out[t, r0 + kk] = dot(W[kk], X[t])


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
