"""Mixture-of-experts layers (llamacpy/ops/moe.py) on the tiny MoE models of scripts/make_tiny_models.py
(their tokens against llama.cpp: test_arch_recordings.py): a decode step reads only the chosen experts'
weights, and a token's logits do not depend on which tokens share its batch."""

from __future__ import annotations

import numpy as np
import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.models import Segment, load_model
from llamacpy.ops.moe import route

PROMPT = [504, 3575, 282, 4649, 314, 1029, 3086, 28]


@pytest.mark.parametrize("name", ["qwen3moe", "qwen2moe"])
def test_decode_reads_only_the_chosen_experts(name, tiny_model):
    model = load_model(GGUFFile(tiny_model(name)))
    cache = model.new_cache(64)
    model.forward(np.array(PROMPT), [Segment(0, 0, len(PROMPT))], cache)
    moes = [L.moe for L in model.layers]
    for m in moes:
        m.bytes_read = 0
    model.forward(np.array([42]), [Segment(0, len(PROMPT), 1)], cache)
    per_expert = moes[0].up[0].nbytes + moes[0].gate[0].nbytes + moes[0].down[0].nbytes
    assert sum(m.bytes_read for m in moes) == len(moes) * moes[0].n_used * per_expert
    assert moes[0].n_used < moes[0].n_expert  # so that is a fraction of the experts' bytes


@pytest.mark.parametrize("name", ["mixtral", "olmoe"])
def test_logits_do_not_depend_on_the_batch(name, tiny_model):
    """One prompt alone, token by token, and beside another prompt in one batch: the same bits."""
    model = load_model(GGUFFile(tiny_model(name)))
    n = len(PROMPT)
    alone = model.forward(np.array(PROMPT), [Segment(0, 0, n)], model.new_cache(64),
                          output_rows=np.arange(n))
    cache = model.new_cache(64)
    stepped = np.concatenate([model.forward(np.array([t]), [Segment(0, i, 1)], cache)
                              for i, t in enumerate(PROMPT)])
    other = [9906, 1917, 11, 856]
    both = model.forward(np.array(other + PROMPT), [Segment(0, 0, len(other)), Segment(1, 0, n)],
                         model.new_cache(64, 2), output_rows=np.arange(len(other), len(other) + n))
    assert np.array_equal(alone, stepped)
    assert np.array_equal(alone, both)


def test_route_is_softmax_top_k_renormalized():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 40)).astype(np.float32)  # 40: whole SIMD widths and a tail
    sel, w = np.empty((5, 4), np.int64), np.empty((5, 4), np.float32)
    route(logits, 4, False, np.float32(0), False, sel, w)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.array_equal(sel, np.argsort(-p, 1)[:, :4])
    np.testing.assert_allclose(w, np.take_along_axis(p, sel, 1), rtol=1e-6)
    route(logits, 4, True, np.float32(2.5), False, sel, w)
    np.testing.assert_allclose(w.sum(1), 2.5, rtol=1e-6)
