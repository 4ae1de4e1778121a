"""The llama/qwen2 fused step (one numba call per layer) against the layer-by-layer path: same logits
and the same KV cache, bit for bit, for a prompt split over two sequences and then parallel decoding."""

from __future__ import annotations

import numpy as np
import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.kernels.weight import VEC_DOT_BATCH
from llamacpy.models import Segment, load_model
from llamacpy.models.base import DecoderModel


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["smollm2_path", "qwen05_path"])
def test_fused_step_equals_layer_by_layer(fixture, request):
    model = load_model(GGUFFile(request.getfixturevalue(fixture)))
    fused_cache, ref_cache = model.new_cache(112, 2), model.new_cache(112, 2)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, model.args.n_vocab, VEC_DOT_BATCH)  # the largest batch the fused step takes
    batches = [(tokens, [Segment(0, 0, 40), Segment(1, 0, VEC_DOT_BATCH - 40)])]
    batches += [(rng.integers(0, model.args.n_vocab, 2), [Segment(0, 40 + i, 1), Segment(1, 24 + i, 1)])
                for i in range(3)]
    for toks, segs in batches:
        fused = model.forward(toks, segs, fused_cache)
        ref = DecoderModel.forward(model, toks, segs, ref_cache)
        np.testing.assert_array_equal(fused, ref)
    for a, b in zip(fused_cache.k + fused_cache.v, ref_cache.k + ref_cache.v, strict=True):
        np.testing.assert_array_equal(a, b)
