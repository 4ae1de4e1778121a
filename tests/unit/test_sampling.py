"""The sampler chain: greedy, filters, penalties, bias, seeds."""

from __future__ import annotations

import numpy as np

from llamacpy.sampling import Sampler, SamplingParams


def logits(values):
    return np.array(values, dtype=np.float32)


def test_greedy_is_argmax():
    s = Sampler(SamplingParams(temperature=0), 5)
    assert s.sample(logits([0, 3, 1, 2, -1])) == 1


def test_same_seed_same_draws_and_different_seed_differs():
    x = logits(np.linspace(0, 1, 50))
    p = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    a = [Sampler(SamplingParams(seed=42, **p), 50).sample(x) for _ in range(1)]
    s1, s2, s3 = (Sampler(SamplingParams(seed=k, **p), 50) for k in (42, 42, 7))
    d1 = [s1.sample(x) for _ in range(40)]
    d2 = [s2.sample(x) for _ in range(40)]
    d3 = [s3.sample(x) for _ in range(40)]
    assert d1 == d2 and d1 != d3 and a[0] == d1[0]


def test_top_k_top_p_min_p_restrict_candidates():
    x = logits([5, 4, 3, 2, 1, 0])
    ids, _ = Sampler(SamplingParams(top_k=2, top_p=1.0, min_p=0.0), 6).probabilities(x)
    assert sorted(ids.tolist()) == [0, 1]
    ids, probs = Sampler(SamplingParams(top_k=0, top_p=0.5, min_p=0.0, temperature=1.0), 6).probabilities(x)
    assert ids.tolist() == [0]  # p(0) = 0.64 already covers 0.5
    ids, _ = Sampler(SamplingParams(top_k=0, top_p=1.0, min_p=0.3, temperature=1.0), 6).probabilities(x)
    assert ids.tolist() == [0, 1]  # exp(-1) = 0.37 >= 0.3, exp(-2) < 0.3
    assert abs(float(probs.sum()) - 1.0) < 1e-6


def test_logit_bias_can_ban_and_force():
    x = logits([1, 2, 3])
    assert Sampler(SamplingParams(temperature=0, logit_bias={2: float("-inf")}), 3).sample(x) == 1
    assert Sampler(SamplingParams(temperature=0, logit_bias={0: 10}), 3).sample(x) == 0


def test_penalties_follow_llama_cpp_formula():
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25), 3)
    for t in (0, 0, 1):
        s.accept(t)
    x = logits([4.0, -1.0, 3.0])
    out = x.copy()
    s._penalize(out)
    # token 0: 4/2 - 2*0.25 - 0.5 = 1.0; token 1: -1*2 - 0.25 - 0.5 = -2.75; token 2 untouched
    np.testing.assert_allclose(out, [1.0, -2.75, 3.0])
    assert s.sample(x) == 2
