"""Kernels over GGML quantized blocks: exact dequantization and fused dequant+dot products.

One module per GGML type (q4_0 ... q6_k, iq4_nl, iq4_xs, mxfp4, floats for F32/F16/BF16), each registering its numba kernels
in `registry.KERNELS`; `WeightMatrix` and `dequantize` pick them by type. Kernels compile lazily on first
use and are cached on disk (numba cache=True; the folder follows the kernels' source, see numba_cache.py).

The `rows` / `vec_dot` (and repacked) drivers repeat the same ~20 lines in each type's module on purpose:
only the `row_dot` intrinsics they call differ, but a factory closure over those intrinsics misses numba's
disk cache in every new process (numba keys a closure on its pickled cells, and an intrinsic pickles
differently per process): measured 2026-11-25, `cache_misses` 1 and a 0.4 s compile per driver per start.

    from llamacpy.kernels import dequantize, WeightMatrix, set_num_threads
"""

from . import (  # noqa: F401
           floats,
           gguf_py,
           iq4_nl,
           iq4_xs,
           mxfp4,
           q2_k,
           q3_k,
           q4_0,
           q4_1,
           q4_k,
           q5_0,
           q5_1,
           q5_k,
           q6_k,
           q8_0,
)
from .q8 import Activations, QuantizedRows, quantize
from .registry import KERNELS, QuantKernels, kernels_for
from .threads import set_num_threads
from .weight import WeightMatrix, dequantize

__all__ = ["KERNELS", "Activations", "QuantKernels", "QuantizedRows", "WeightMatrix", "dequantize", "kernels_for",
           "quantize", "set_num_threads"]
