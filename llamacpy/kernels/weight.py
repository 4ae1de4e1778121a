"""The public face of the kernels: `dequantize` and `WeightMatrix` over a GGUF tensor's raw blocks."""

from __future__ import annotations

import logging
import threading

import numpy as np

from ..gguf import GGMLType, Tensor
from . import gguf_py
from ._common import F16_TO_F32
from .q8 import Activations
from .registry import kernels_for
from .simd import HAS_AVX2, HAS_AVX512
from .threads import (
    PARALLEL_MIN_BYTES,
    SETTINGS,
    concurrent_kernels_ok,
    ensure_threads,
    single_threaded_blas,
    use_threads,
)

log = logging.getLogger("llamacpy")
_SLOW_TYPES_SEEN: set[GGMLType] = set()

# matmul strategy by the number of rows T of X: up to MATVEC_BATCH, one fused GEMV per row (reading the
# blocks twice beats dequantizing them once); up to SMALL_BATCH, the small-batch kernel (row chunks
# dequantized into L2 and multiplied with 4x4 register tiles); above, f32 row tiles + BLAS GEMM.
# Measured on 4864 x 896 Q5_0/Q4_K/Q8_0, one core: the small-batch kernel wins up to T ~ 48.
MATVEC_BATCH = 2
SMALL_BATCH = 32
# `mul` (ggml's numerics) takes the integer vec_dot kernels up to this many rows, f32 tiles + BLAS above.
VEC_DOT_BATCH = 64
# f32 elements per dequantized tile of the BLAS path, per thread (4 MiB): BLAS repacks X for every
# tile, so tiles must be wide (64-row tiles ran at half the speed of 1024-row tiles on 4096 x 4096).
TILE_ELEMS = 1 << 20


def repacked_by_ggml(qtype: GGMLType, n_out: int) -> bool:
    """Whether llama.cpp's x86 CPU backend multiplies this weight with its repacked 8-row kernels
    (ggml_repack_get_optimal_repack_type: Q4_0, Q4_K, IQ4_NL and MXFP4 with AVX2, Q2_K with AVX-512,
    n_out % 8 == 0);
    their float accumulation differs from vec_dot's, and we reproduce whichever ggml runs."""
    if n_out % 8:
        return False
    return (qtype in (GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.IQ4_NL, GGMLType.MXFP4) and HAS_AVX2) or (qtype == GGMLType.Q2_K and HAS_AVX512)


def _blocks(data: np.ndarray) -> np.ndarray:
    """The raw bytes as a C-contiguous read-only u8 array (one numba specialization for all callers)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if data.flags.writeable:
        data = data.view()
        data.flags.writeable = False
    return data


def dequantize(t: Tensor) -> np.ndarray:
    """All of `t` as float32 of shape `t.shape`, bit for bit what gguf-py's `quants.dequantize` gives."""
    data = _blocks(t.data)
    out = np.empty((data.shape[0], t.shape[-1]), np.float32)
    ensure_threads()
    if data.nbytes < PARALLEL_MIN_BYTES:  # norms, biases: not worth waking the pool
        use_threads(1)
    kernels_for(t.type).dequant_rows(data, np.arange(data.shape[0]), out, F16_TO_F32)
    return out.reshape(t.shape)


class WeightMatrix:
    """A 2-D weight (n_out, n_in) used straight from its GGML blocks (never expanded to f32 whole).

    >>> w = WeightMatrix(gguf.tensors["blk.0.ffn_up.weight"]); y = w.matvec(x)   # y = W @ x
    """

    def __init__(self, t: Tensor):
        if len(t.shape) != 2:
            raise ValueError(f"{t.name}: a weight matrix needs 2 dimensions, got shape {t.shape}")
        self.name = t.name
        self.type = GGMLType(t.type)
        self.n_out, self.n_in = int(t.shape[0]), int(t.shape[1])
        self.data = _blocks(t.data)
        if self.data.shape[0] != self.n_out:
            raise ValueError(f"{t.name}: {self.data.shape[0]} rows of blocks for shape {t.shape}")
        try:
            k = kernels_for(self.type)
        except NotImplementedError as e:
            raise NotImplementedError(f"{t.name}: {e}") from None
        self._matvec, self._matmul, self._dequant_rows = k.matvec, k.matmul, k.dequant_rows
        self._vec_dot, self.vec_dot_type = k.vec_dot, k.vec_dot_type
        if k.vec_dot_repack is not None and repacked_by_ggml(self.type, self.n_out):
            self._vec_dot = k.vec_dot_repack
        if self.type in gguf_py.TYPES and self.type not in _SLOW_TYPES_SEEN:
            _SLOW_TYPES_SEEN.add(self.type)
            log.warning("%s weights run through gguf-py's dequantizer (kernels/gguf_py.py): slow (every product "
                        "dequantizes the rows again)", self.type.name)
        self._mins: np.ndarray | None = None
        self._f32 = self.type == GGMLType.F32
        self._serial = self.data.nbytes < PARALLEL_MIN_BYTES
        ensure_threads()

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def __repr__(self) -> str:
        return f"WeightMatrix({self.name!r}, {self.type.name}, n_out={self.n_out}, n_in={self.n_in})"

    def _x(self, x: np.ndarray, ndim: int) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not x.flags.writeable:  # read-only inputs would compile a second specialization of each kernel
            x = x.copy()
        if x.ndim != ndim or x.shape[-1] != self.n_in:
            raise ValueError(f"{self.name}: input of shape {x.shape}, expected last dimension {self.n_in}")
        return x

    def matvec(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """W @ x for x f32[n_in] -> f32[n_out], dequantizing and multiplying in one pass over the blocks."""
        x = self._x(x, 1)
        if out is None:
            out = np.empty(self.n_out, np.float32)
        elif out.shape != (self.n_out,) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(
                f"{self.name}: out must be a contiguous float32[{self.n_out}], got {out.dtype}{out.shape}"
            )
        use_threads(1 if self._serial else SETTINGS.n)
        self._matvec(self.data, x, out, F16_TO_F32)
        return out

    def matmul(self, X: np.ndarray) -> np.ndarray:
        """X @ W.T for X f32[T, n_in] -> f32[T, n_out]: fused kernel for small T, BLAS on f32 tiles for large."""
        X = self._x(X, 2)
        T = X.shape[0]
        out = np.empty((T, self.n_out), np.float32)
        if self._f32:  # ggml's order for T rows (kernels/floats.py)
            use_threads(1 if self._serial else SETTINGS.n)
            self._matmul(self.data, X, out, F16_TO_F32)
            return out
        if T <= MATVEC_BATCH:
            for t in range(T):
                self.matvec(X[t], out[t])
            return out
        ensure_threads()
        if T <= SMALL_BATCH:
            self._matmul(self.data, X, out, F16_TO_F32)
            return out
        return self._matmul_tiles(X, out)

    def mul(self, x: np.ndarray | Activations) -> np.ndarray:
        """x @ W.T for x (T, n_in) f32 rows, as ggml computes it: for quantized W the rows are first
        quantized to the weight's vec_dot type (Q8_0/Q8_1/Q8_K, see `q8.py`), then multiplied with integer
        dot products (few rows) or as f32 through BLAS (many rows; same values, float summation order).
        Pass an `Activations` to share one quantization between the matrices that read the same rows."""
        acts = x if isinstance(x, Activations) else Activations(x)
        if self.vec_dot_type is None:  # float weights: f32 products
            X = self._x(acts.x, 2)
            return self.matvec(X[0])[None, :] if X.shape[0] == 1 else self.matmul(X)
        qr = acts.quantized(self.vec_dot_type)
        if qr.q.shape[1] != self.n_in:
            raise ValueError(f"{self.name}: input of shape {qr.q.shape}, expected last dimension {self.n_in}")
        T = qr.q.shape[0]
        if T > VEC_DOT_BATCH:
            out = self._matmul_tiles(qr.f32(), np.empty((T, self.n_out), np.float32))
            if self.vec_dot_type == GGMLType.Q8_1:
                out += qr.q8_1_correction() @ self._block_mins().T
            return out
        out = np.empty((T, self.n_out), np.float32)
        use_threads(1 if self._serial and T <= 4 else SETTINGS.n)
        self._vec_dot(self.data, qr.q, qr.d, qr.s, out)
        return out

    def _block_mins(self) -> np.ndarray:
        """(n_out, n_in/32) f32 block minimums m of a Q4_1/Q5_1 weight (bytes 2-3 of each block)."""
        if self._mins is None:
            blocks = self.data.reshape(self.n_out, self.n_in // 32, -1)
            self._mins = np.ascontiguousarray(blocks[:, :, 2:4]).view(np.float16)[:, :, 0].astype(np.float32)
        return self._mins

    def _matmul_tiles(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Large batches: each of n Python threads walks its share of the rows in tiles, dequantizing a
        tile to f32 (numba, one thread) and multiplying it with single-threaded BLAS. One pool of busy
        threads only: alternating numba's and BLAS's pools makes each wait for the other's spinning."""
        n_thr = SETTINGS.n if concurrent_kernels_ok() else 1
        rows = max(16, min(self.n_out, TILE_ELEMS // self.n_in))
        per = -(-self.n_out // n_thr)
        per = -(-per // 16) * 16
        spans = [(r0, min(self.n_out, r0 + per)) for r0 in range(0, self.n_out, per)]

        def work(r0: int, r1: int) -> None:
            use_threads(1)
            tile = np.empty((rows, self.n_in), np.float32)
            ids = np.arange(r0, r1)
            for t0 in range(r0, r1, rows):
                t1 = min(r1, t0 + rows)
                self._dequant_rows(self.data, ids[t0 - r0 : t1 - r0], tile[: t1 - t0], F16_TO_F32)
                out[:, t0:t1] = X @ tile[: t1 - t0].T

        with single_threaded_blas():
            threads = [threading.Thread(target=work, args=span) for span in spans[1:]]
            for th in threads:
                th.start()
            work(*spans[0])
            for th in threads:
                th.join()
        use_threads(SETTINGS.n)
        return out

    def get_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` of W as f32[len(ids), n_in] (embedding lookup): only those rows are dequantized."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_out):
            raise IndexError(
                f"{self.name}: row ids must be in [0, {self.n_out}), got {ids.min()}..{ids.max()}"
            )
        out = np.empty((ids.shape[0], self.n_in), np.float32)
        ensure_threads()
        if ids.shape[0] * self.data.shape[1] < PARALLEL_MIN_BYTES:  # a few tokens: not worth the pool
            use_threads(1)
        self._dequant_rows(self.data, ids, out, F16_TO_F32)
        return out

    def dequantize(self) -> np.ndarray:
        """The whole matrix as f32[n_out, n_in] (for tests and small tensors)."""
        return self.get_rows(np.arange(self.n_out))
