"""Layer-level numerics against llama.cpp itself.

tests/data/llama_cpp_layers/*.npz hold llama.cpp's own intermediate tensors of layers 0 and 1 for one
prompt per catalog model (recorded with scripts/record_llama_cpp_layers.py from the llama.cpp vendored in
llama-cpp-python 0.3.36). Our forward pass must reproduce them to float32 rounding: this is where the
activation quantization (ops/linear.py), the f16 attention (ops/attention.py), ggml's RMS norm and RoPE
rounding are checked, on layer 0. Steps that round to f16 (attention, GELU's table) get a looser bound:
a last-bit difference in their input can flip one f16 rounding. From layer 1 on such flips feed the
next activation quantization, so later layers drift by more than float rounding (see docs/numerics.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.kernels.simd import HAS_AVX512
from llamacpy.models import Segment, load_model

# the host's instruction set picks the recording: ggml's float order follows its SIMD width, as llamacpy does
DATA = Path(__file__).parent.parent / "data" / ("llama_cpp_layers" if HAS_AVX512 else "llama_cpp_layers_avx2")
MODELS = {"smollm2-135m-instruct": "smollm2_path", "qwen2.5-coder-0.5b-instruct": "qwen05_path",
          "gemma-3-270m": "gemma_path"}
TOLERANCE = {"kqv_out": 3e-4, "ffn_geglu": 3e-5}
DEFAULT_TOLERANCE = 3e-6  # relative to the tensor's largest magnitude


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_layers_match_llama_cpp(name, request):
    ref = np.load(DATA / f"{name}.npz")
    model = load_model(GGUFFile(request.getfixturevalue(MODELS[name])))
    tokens = ref["tokens"]
    trace: dict[str, np.ndarray] = {}
    model.forward(tokens, [Segment(0, 0, len(tokens))], model.new_cache(64), trace=trace)
    compared = []
    for key in ref.files:
        if not key.endswith("-0") or key not in trace:
            continue
        ours, theirs = trace[key].reshape(len(tokens), -1), ref[key]
        err = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        compared.append((key, err))
        assert err <= TOLERANCE.get(key.rsplit("-", 1)[0], DEFAULT_TOLERANCE), f"{name} {key}: relative error {err:.2e}"
    assert len(compared) >= 8, compared  # every traced step of layer 0
