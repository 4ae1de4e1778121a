"""The sampler chain: llama.cpp's samplers one by one, its random streams, the `samplers` order.
(Seeded end-to-end parity with llama-server: tests/server/test_sampling_parity.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from llamacpy.sampling import Sampler, SamplingParams
from llamacpy.sampling import samplers as S
from llamacpy.sampling.chain import sampler_names
from llamacpy.sampling.dry import Dry, _repeat_counts
from llamacpy.sampling.stdrng import StdMT19937


def logits(values):
    return np.array(values, dtype=np.float32)


def test_std_mt19937_draws_equal_libstdcxx():
    # printed by g++ 12 (libstdc++): std::mt19937 r(42); uniform_real_distribution<double>(0, 1)(r) x3,
    # then <float> x3 on a fresh engine, then discrete_distribution({0.1, 0.2, 0.7}) x5
    r = StdMT19937(42)
    assert [r.uniform_double() for _ in range(3)] == [0.79654298428784598, 0.18343478789336848,
                                                       0.77969099761266125]
    r = StdMT19937(42)
    assert [float(r.uniform_float()) for _ in range(3)] == pytest.approx([0.37454012, 0.796543002, 0.95071429],
                                                                         abs=1e-8)
    r = StdMT19937(42)
    assert [r.discrete(np.array([0.1, 0.2, 0.7], np.float32)) for _ in range(5)] == [2, 1, 2, 2, 2]


def test_greedy_is_argmax_after_penalties():
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=4.0), 5)
    assert s.sample(logits([0, 3, 1, 2, -1])) == 1
    s.accept(1)
    assert s.sample(logits([0, 3, 1, 2, -1])) == 3  # 3/4 < 2
    assert s.candidates()[0].tolist() == [3]


def test_same_seed_same_draws_and_different_seed_differs():
    x = logits(np.linspace(0, 1, 50))
    p = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    s1, s2, s3 = (Sampler(SamplingParams(seed=k, **p), 50) for k in (42, 42, 7))
    d1 = [s1.sample(x) for _ in range(40)]
    assert d1 == [s2.sample(x) for _ in range(40)]
    assert d1 != [s3.sample(x) for _ in range(40)]


def chain(x, *steps):
    c = S.Candidates(logits(x))
    for step in steps:
        step(c)
    return c


def test_top_k_top_p_min_p_keep_llama_cpp_sets_and_order():
    x = [0, 1, 2, 3, 4, 5]
    assert chain(x, lambda c: S.top_k(c, 2)).ids.tolist() == [5, 4]
    assert chain(x, lambda c: S.top_p(c, 0.5, 0)).ids.tolist() == [5]  # p(5) = 0.64 covers 0.5
    assert chain(x, lambda c: S.top_p(c, 0.5, 3)).ids.tolist() == [5, 4, 3]  # min_keep
    # unsorted min-p keeps the vocabulary order; exp(-1) >= 0.3 > exp(-2)
    assert chain(x, lambda c: S.min_p(c, 0.3, 0)).ids.tolist() == [4, 5]
    assert chain(x, lambda c: S.top_k(c, 6), lambda c: S.min_p(c, 0.3, 0)).ids.tolist() == [5, 4]


def test_typical_keeps_the_tokens_nearest_the_entropy():
    c = chain([3.0, 2.0, 1.0, 0.0, -5.0], lambda c: S.typical(c, 0.5, 0))
    p = np.exp([3.0, 2.0, 1.0, 0.0, -5.0])
    p /= p.sum()
    h = -(p * np.log(p)).sum()
    order = np.argsort(np.abs(-np.log(p) - h))
    want = order[: int(np.argmax(np.cumsum(p[order]) > 0.5)) + 1]
    assert c.ids.tolist() == want.tolist() and not c.sorted


def test_top_n_sigma_masks_below_max_minus_n_std():
    x = logits([10, 9, 0, 0, 0, 0])
    c = chain(x, lambda c: S.top_n_sigma(c, 1.0))
    assert np.isfinite(c.logits).tolist() == [True, True, False, False, False, False]


def test_xtc_removes_all_but_the_least_likely_above_threshold():
    rng = StdMT19937(1)
    c = chain([5.0, 4.9, 4.8, 0.0], lambda c: S.xtc(c, 1.0, 0.1, 1, rng))
    assert c.ids.tolist() == [2, 3]  # 0 and 1 are above 0.1 and not the last such: removed


def test_dynatemp_maps_entropy_into_the_temperature_range():
    flat = chain([1.0, 1.0, 1.0, 1.0], lambda c: S.temp_ext(c, 1.0, 0.5, 1.0))
    assert flat.logits[0] == pytest.approx(1.0 / 1.5)  # maximal entropy: temperature + range


def test_mirostat2_truncates_by_surprise_and_updates_mu():
    m = S.Mirostat(2, 4, seed=1, tau=1.0, eta=0.5)
    c = S.Candidates(logits([4.0, 3.0, 0.0, -1.0]))
    m.apply(c)  # mu starts at 2 tau = 2 bits: tokens 0 and 1 (0.5 and 1.9 bits) stay, 6.2 and 7.6 go
    assert c.ids.tolist() == [0, 1]
    surprise = -np.log2(c.p[c.selected])
    assert m.mu == pytest.approx(2.0 - 0.5 * (surprise - 1.0))


def test_penalties_follow_llama_cpp_formula():
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25), 3)
    for t in (0, 0, 1):
        s.accept(t)
    c = S.Candidates(logits([4.0, -1.0, 3.0]))
    s.penalties.apply(c)
    # token 0: 4/2 - 2*0.25 - 0.5 = 1.0; token 1: -1*2 - 0.25 - 0.5 = -2.75; token 2 untouched
    np.testing.assert_allclose(c.logits, [1.0, -2.75, 3.0])
    assert s.sample(logits([4.0, -1.0, 3.0])) == 2


def test_penalty_window_forgets_old_tokens():
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=100.0, repeat_last_n=2), 3)
    for t in (0, 1, 2):
        s.accept(t)
    assert s.sample(logits([3.0, 2.0, 1.0])) == 0  # 0 left the window of 2


def test_dry_repeat_counts_and_penalty():
    # llama.cpp's example: last tokens a b c c b c y a b c -> repeat counts 0 0 3 1 0 2 0 0 0 0
    seq = list("abccbcyabc")
    assert _repeat_counts(seq[::-1], len(seq)) == [0, 0, 3, 1, 0, 2, 0, 0, 0, 0]
    ids = {ch: i for i, ch in enumerate("abcy")}
    dry = Dry(1.0, 2.0, 2, 64, breakers={ids["y"]: ((),)})
    for ch in "abccbcyabc":
        dry.accept(ids[ch])
    c = S.Candidates(np.zeros(4, np.float32))
    dry.apply(c)
    # "a b c" + c repeats 3 tokens: 1 * 2^(3-2); "b c" + y would repeat 2, but y is a breaker
    assert c.logits.tolist() == [0.0, 0.0, -2.0, 0.0]


def test_sampler_names_take_names_aliases_and_letters():
    assert sampler_names(["Top-K", "temp", "nucleus", "typ", "minp", "bogus"]) == (
        "top_k", "temperature", "top_p", "typ_p", "min_p")
    assert sampler_names("edskypmxt") == ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p",
                                          "xtc", "temperature")
    with pytest.raises(ValueError, match="infill"):
        Sampler(SamplingParams(samplers=("infill",)), 4)


def test_custom_order_without_temperature_samples_unscaled():
    # no temperature in the chain: temperature 0 no longer means greedy, as in llama.cpp
    s = Sampler(SamplingParams(temperature=0, samplers=("top_k",), top_k=2, seed=3), 3)
    draws = {s.sample(logits([1.0, 1.0, -9.0])) for _ in range(40)}
    assert draws == {0, 1}


def test_logit_bias_can_ban_and_force():
    x = logits([1, 2, 3])
    assert Sampler(SamplingParams(temperature=0, logit_bias={2: float("-inf")}), 3).sample(x) == 1
    assert Sampler(SamplingParams(temperature=0, logit_bias={0: 10}), 3).sample(x) == 0
