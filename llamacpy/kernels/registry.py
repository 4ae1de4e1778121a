"""The kernel registry: one entry per GGML type, filled in by the type modules as they are imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..gguf import GGMLType


@dataclass(frozen=True)
class QuantKernels:
    """The numba kernels of one GGML type. All take the raw block bytes `data` (u8[n_rows, row_bytes])
    and the f16 -> f32 table `f16`:

    - `dequant_rows(data, ids, out, f16)`: out[i, :] = row ids[i] as f32 (bit-exact with gguf-py)
    - `matvec(data, x, out, f16)`: out[r] = row r . x, fused on the blocks
    - `matmul(data, X, out, f16)`: out[t, r] = row r . X[t], for a few rows of X (small-batch decode)
    - `vec_dot(data, xq, xd, xs, out)`: out[t, r] = row r . activation row t quantized to `vec_dot_type`
      (`q8.QuantizedRows` q, d, s): ggml's integer dot products, for quantized types only
    - `vec_dot_repack`: the same products with the float arithmetic of ggml's repacked 8-row kernels,
      which llama.cpp's CPU backend uses instead for some types (see `WeightMatrix`)
    """

    type: GGMLType
    dequant_rows: Callable
    matvec: Callable
    matmul: Callable
    vec_dot: Callable | None = None
    vec_dot_type: GGMLType | None = None
    vec_dot_repack: Callable | None = None


KERNELS: dict[GGMLType, QuantKernels] = {}


def register(qtype: GGMLType, dequant_rows: Callable, matvec: Callable, matmul: Callable,
             vec_dot: Callable | None = None, vec_dot_type: GGMLType | None = None,
             vec_dot_repack: Callable | None = None) -> None:
    KERNELS[qtype] = QuantKernels(qtype, dequant_rows, matvec, matmul, vec_dot, vec_dot_type, vec_dot_repack)


def kernels_for(qtype: GGMLType) -> QuantKernels:
    try:
        return KERNELS[qtype]
    except KeyError:
        names = ", ".join(t.name for t in KERNELS)
        raise NotImplementedError(f"no kernels for GGML type {GGMLType(qtype).name} (have {names})") from None
