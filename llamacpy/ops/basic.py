"""Norms and activations (float32), rounding as ggml's CPU backend does.

numba kernels without fastmath: each reproduces ggml's operation order (and its FMAs) so that results
equal llama.cpp's bit for bit where the inputs do; downstream activation quantization turns any
last-bit difference here into visible noise.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels._common import fma32, half_bits, half_to_float, pow2
from ..kernels.simd import HAS_AVX512

_INF = np.float32(np.inf)
# ggml_v_expf's constants, as written there (hex floats)
_E_SHIFT, _E_LOG2E = np.float32(float.fromhex("0x1.8p23")), np.float32(float.fromhex("0x1.715476p+0"))
_E_LN2_HI, _E_LN2_LO = np.float32(float.fromhex("0x1.62e4p-1")), np.float32(float.fromhex("0x1.7f7d1cp-20"))
_E_C5, _E_C4 = np.float32(float.fromhex("0x1.0e4020p-7")), np.float32(float.fromhex("0x1.573e2ep-5"))
_E_C3, _E_C2 = np.float32(float.fromhex("0x1.555e66p-3")), np.float32(float.fromhex("0x1.fffdb6p-2"))
_E_C1 = np.float32(float.fromhex("0x1.ffffecp-1"))


@njit(cache=True, nogil=True)
def _rms_norm_rows(x, w, eps, out):
    """ggml_compute_forward_rms_norm_f32 fused with the weight (GGML_RMS_NORM_FUSE_OP_MUL): sum of f32
    squares in double, mean rounded to f32, scale = 1/sqrtf(mean + eps), y = x * scale * w."""
    n = x.shape[1]
    for t in range(x.shape[0]):
        s = 0.0
        for i in range(n):
            v = x[t, i] * x[t, i]
            s += np.float64(v)
        mean = np.float32(s / n)
        scale = np.float32(1.0) / np.sqrt(mean + eps)
        for i in range(n):
            out[t, i] = x[t, i] * scale * w[i]


def rms_norm(x: np.ndarray, weight: np.ndarray | None, eps: float) -> np.ndarray:
    """RMS norm over the last axis, times `weight` (float32 of that length) when given."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    w = np.ones(n, np.float32) if weight is None else np.ascontiguousarray(weight, dtype=np.float32)
    out = np.empty_like(x)
    _rms_norm_rows(x.reshape(-1, n), w, np.float32(eps), out.reshape(-1, n))
    return out


@njit(cache=True, nogil=True, inline="always")
def _v_expf(x):
    """ggml_v_expf (AVX-512), lane by lane: exp(x) from a degree-5 polynomial and _mm512_scalef_ps.
    Branch-free (selects), so LLVM vectorizes the loops that call it."""
    z = fma32(x, _E_LOG2E, _E_SHIFT)
    n = z - _E_SHIFT
    b = fma32(-n, _E_LN2_LO, fma32(-n, _E_LN2_HI, x))
    u = b * b
    j = fma32(fma32(fma32(_E_C5, b, _E_C4), u, fma32(_E_C3, b, _E_C2)), u, fma32(_E_C1, b, np.float32(1.0)))
    # scalef(j, n) = j * 2^n rounded once: the first factor 2^n1 is exact and in range
    n1 = min(max(n, np.float32(-126.0)), np.float32(127.0))
    res = (j * pow2(n1)) * pow2(n - n1)
    out_of_range = np.float32(0.0) if n <= 0 else _INF
    return out_of_range if abs(n) > np.float32(192.0) else res


@njit(cache=True, nogil=True, inline="always")
def _v_expf_avx2(x):
    """ggml_v_expf (AVX2), lane by lane: the same reduction and polynomial as the AVX-512 one but without its +1,
    the result fma(j, 2^n, 2^n) (one rounding); past |n| > 126 the 2^n is split in two factors s1 * s2 as there
    (s2 * (1 + j) rounded, then times s1), past 192 it is 0 or inf."""
    z = fma32(x, _E_LOG2E, _E_SHIFT)
    n = z - _E_SHIFT
    b = fma32(-n, _E_LN2_LO, fma32(-n, _E_LN2_HI, x))
    u = b * b
    j = fma32(fma32(fma32(_E_C5, b, _E_C4), u, fma32(_E_C3, b, _E_C2)), u, _E_C1 * b)
    if abs(n) <= np.float32(126.0):
        k = pow2(n)
        return fma32(j, k, k)
    if abs(n) > np.float32(192.0):
        return np.float32(0.0) if n <= 0 else _INF
    if n <= 0:  # s1 = 2^-125, s2 = 2^(n + 125)
        s2 = pow2(n + np.float32(125.0))
        return fma32(s2, j, s2) * pow2(np.float32(-125.0))
    s2 = pow2(n - np.float32(127.0))  # s1 = 2^127
    return fma32(s2, j, s2) * pow2(np.float32(127.0))


@njit(cache=True, nogil=True, error_model="numpy")  # numpy's error model: no zero check, so `/` vectorizes
def _swiglu(g, u, out):
    """ggml_vec_swiglu_f32: silu(g) * u, 16 lanes at a time with ggml_v_expf (8 with its AVX2 form on a host
    without AVX-512, as the llama.cpp built there), the tail with expf."""
    lanes = 16 if HAS_AVX512 else 8
    for t in range(g.shape[0]):
        n = g.shape[1]
        m = n - n % lanes
        if HAS_AVX512:
            for i in range(m):
                x = g[t, i]
                out[t, i] = (x / (np.float32(1.0) + _v_expf(np.float32(0.0) - x))) * u[t, i]
        else:
            for i in range(m):
                x = g[t, i]
                out[t, i] = (x / (np.float32(1.0) + _v_expf_avx2(np.float32(0.0) - x))) * u[t, i]
        for i in range(m, n):
            x = g[t, i]
            out[t, i] = (x / (np.float32(1.0) + np.exp(-x))) * u[t, i]


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """silu(gate) * up (T, n) as ggml's fused swiglu computes it."""
    out = np.empty_like(gate)
    _swiglu(gate, up, out)
    return out


@njit(cache=True, nogil=True)
def _swiglu_oai(g, u, alpha, limit, out):
    for t in range(g.shape[0]):
        for i in range(g.shape[1]):
            x = min(g[t, i], limit)
            y = min(max(u[t, i], -limit), limit)
            out[t, i] = (x / (np.float32(1.0) + np.exp(alpha * (-x)))) * (y + np.float32(1.0))


def swiglu_oai(gate: np.ndarray, up: np.ndarray, alpha: float = 1.702, limit: float = 7.0) -> np.ndarray:
    """gpt-oss's clamped SwiGLU (ggml_swiglu_oai): x = min(gate, limit), y = clamp(up, -limit, limit),
    x * sigmoid(alpha x) * (y + 1), the sigmoid as x / (1 + expf(-alpha x))."""
    gate, up = (np.ascontiguousarray(a, dtype=np.float32) for a in (gate, up))
    out = np.empty_like(gate)
    _swiglu_oai(gate, up, np.float32(alpha), np.float32(limit), out)
    return out


def relu_sqr(x: np.ndarray) -> np.ndarray:
    """ggml_sqr(ggml_relu(x)): max(x, 0) squared (llama.cpp's LLM_FFN_RELU_SQR)."""
    r = np.maximum(x, np.float32(0.0))
    return r * r


def silu(x: np.ndarray) -> np.ndarray:
    return x / (np.float32(1.0) + np.exp(-x))


_GELU_COEF_A = np.float32(0.044715)
_SQRT_2_OVER_PI = np.float32(0.79788456080286535587989211986876)


@njit(cache=True, nogil=True)
def _gelu_table():
    """ggml_table_gelu_f16: f16(ggml_gelu_f32(x)) for every f16 bit pattern x, as GCC compiles
    0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x))) (the inner 1 + a*x*x is an FMA).
    Checked entry for entry against the table in llama.cpp's libggml-cpu."""
    table = np.empty(65536, np.uint16)
    for i in range(65536):
        x = half_to_float(np.uint16(i))
        inner = _SQRT_2_OVER_PI * x * fma32(_GELU_COEF_A * x, x, np.float32(1.0))
        table[i] = half_bits(np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner)))
    return table


GELU_TABLE = _gelu_table()
GELU_TABLE.flags.writeable = False


@njit(cache=True, nogil=True)
def _geglu(x, g, table, out):
    """ggml_vec_geglu_f32 (GGML_GELU_FP16): 0 for x <= -10, x * g for x >= 10, else table[f16(x)] * g."""
    for t in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = x[t, i]
            if v <= np.float32(-10.0):
                out[t, i] = np.float32(0.0)
            elif v >= np.float32(10.0):
                out[t, i] = v * g[t, i]
            else:
                out[t, i] = half_to_float(table[half_bits(v)]) * g[t, i]


def geglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """gelu(gate) * up (T, n) as ggml's fused geglu computes it (GELU through the f16 table)."""
    out = np.empty_like(gate)
    _geglu(gate, up, GELU_TABLE, out)
    return out


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU (tanh approximation) the way ggml's CPU backend computes it (through the f16 table)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    return geglu(x.reshape(-1, n), np.ones_like(x).reshape(-1, n)).reshape(x.shape)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


@njit(cache=True, nogil=True, fastmath=True)
def _layer_norm_rows(x, w, b, eps, out):
    """ggml_norm then * w + b: mean and variance of each row (sums in f64), y = (x - mean) / sqrt(var + eps)."""
    n = x.shape[1]
    for t in range(x.shape[0]):
        s = 0.0
        for i in range(n):
            s += np.float64(x[t, i])
        mean = np.float32(s / n)
        s2 = 0.0
        for i in range(n):
            d = np.float64(x[t, i] - mean)
            s2 += d * d
        scale = np.float32(1.0) / np.sqrt(np.float32(s2 / n) + eps)
        for i in range(n):
            out[t, i] = (x[t, i] - mean) * scale * w[i] + b[i]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with weight and bias (float32 of that length)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    out = np.empty_like(x)
    _layer_norm_rows(x.reshape(-1, n), weight, bias, np.float32(eps), out.reshape(-1, n))
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _gelu_erf_rows(x, out):
    for t in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = x[t, i]
            out[t, i] = np.float32(0.5) * v * (np.float32(1.0) + math.erf(v * np.float32(0.7071067811865476)))


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU with the exact error function (BERT's `hidden_act: gelu`, as transformers computes it)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    out = np.empty_like(x)
    _gelu_erf_rows(x.reshape(-1, n), out.reshape(-1, n))
    return out
