"""Bit-exactness against llama.cpp: every traced tensor of layers 0 and 1, for one short prompt per model.

The reference tensors (tests/data/llama_cpp_layers, recorded with llama.cpp's eval callback on x86-64 with
AVX-512; tests/data/llama_cpp_layers_avx2 on a host without it, by scripts/record_llama_cpp_layers_dump.py: ggml's
summation order follows the SIMD width, and llamacpy follows the host's) are reproduced exactly, not just to float rounding: the
quantized products follow ggml's kernels' float order (vec_dot, or the repacked 8-row GEMV/GEMM for
Q4_0/Q4_K/Q2_K), RMS norm, RoPE (libm powf/cosf/sinf, GCC's FMA contractions), SwiGLU (ggml_v_expf),
GELU (the f16 table) and the f16 one-chunk flash attention round as ggml does. See docs/numerics.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.kernels.simd import HAS_AVX512
from llamacpy.models import Segment, load_model

DATA = Path(__file__).parent.parent / "data" / ("llama_cpp_layers" if HAS_AVX512 else "llama_cpp_layers_avx2")
MODELS = {"smollm2-135m-instruct": "smollm2_path", "qwen2.5-coder-0.5b-instruct": "qwen05_path",
          "gemma-3-270m": "gemma_path"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_first_layers_equal_llama_cpp_bit_for_bit(name, request):
    ref = np.load(DATA / f"{name}.npz")
    model = load_model(GGUFFile(request.getfixturevalue(MODELS[name])))
    tokens = ref["tokens"]
    trace: dict[str, np.ndarray] = {}
    model.forward(tokens, [Segment(0, 0, len(tokens))], model.new_cache(64), trace=trace)
    compared = [key for key in ref.files if key in trace]
    assert len(compared) >= 16, compared  # every traced step of layers 0 and 1
    different = {key: int((trace[key].reshape(len(tokens), -1) != ref[key]).sum()) for key in compared}
    assert not any(different.values()), {k: v for k, v in different.items() if v}
