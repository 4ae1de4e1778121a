"""ops: f16 rounding, attention formulations, norms."""

from __future__ import annotations

import numpy as np

from llamacpy.ops.attention import _attention_f32, attention
from llamacpy.ops.basic import rms_norm
from llamacpy.ops.f16 import round_f16_inplace, to_f16_precision


def test_round_f16_equals_numpy_cast_over_the_range():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(100_000) * np.exp(rng.uniform(-25, 9, 100_000))).astype(np.float32)
    x = x[np.abs(x) < 65504]  # overflow to inf is not reproduced (see round_f16_view)
    x = np.concatenate([x, np.float32([0.0, -0.0, 6e-8, 3e-8, 6.1e-5, -6.1e-5, 65504.0, 0.5 + 2**-12])])
    y = x.copy()
    round_f16_inplace(y)
    np.testing.assert_array_equal(y, x.astype(np.float16).astype(np.float32))


def test_online_f16_attention_is_softmax_attention_within_f16_precision():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((5, 6, 64)).astype(np.float32)
    k = to_f16_precision(rng.standard_normal((2, 20, 64)).astype(np.float32))
    v = to_f16_precision(rng.standard_normal((2, 20, 64)).astype(np.float32))
    for window in (0, 4):
        online = attention(q, k, v, 15, 0.125, window)  # 5 rows: the one-chunk (f16) formulation
        exact = _attention_f32(q, k, v, 15, 0.125, window)
        np.testing.assert_allclose(online, exact, atol=3e-3)


def test_sliding_window_hides_old_keys():
    q = np.ones((1, 1, 64), np.float32)
    k = np.zeros((1, 10, 64), np.float32)
    v = np.arange(10, dtype=np.float32)[None, :, None].repeat(64, axis=2)
    out = attention(q, k, v, 9, 1.0, window=2)  # sees keys 8 and 9 only, equal scores
    np.testing.assert_allclose(out[0, :3], 8.5)


def test_rms_norm():
    x = np.array([[3.0, 4.0]], np.float32)
    np.testing.assert_allclose(rms_norm(x, np.array([1.0, 2.0], np.float32), 0.0),
                               [[3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]], rtol=1e-6)


def test_prompt_attention_is_softmax_attention():
    """64+ rows (prompt batches): BLAS over each row block's visible keys, masked softmax between."""
    rng = np.random.default_rng(2)
    q = rng.standard_normal((300, 6, 64)).astype(np.float32)
    k = rng.standard_normal((2, 340, 64)).astype(np.float16)
    v = rng.standard_normal((2, 340, 64)).astype(np.float16)
    for window in (0, 50):
        got = attention(q, k, v, 40, 0.125, window)
        want = _attention_f32(q, k.astype(np.float32), v.astype(np.float32), 40, 0.125, window)
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_swiglu_is_silu_times_up_and_vectorized_exp_is_exp():
    from llamacpy.ops.basic import swiglu

    rng = np.random.default_rng(3)
    g = (rng.standard_normal((3, 100)) * 20).astype(np.float32)  # 96 lanes by ggml_v_expf, 4 by expf
    u = rng.standard_normal((3, 100)).astype(np.float32)
    want = g.astype(np.float64) / (1 + np.exp(-g.astype(np.float64))) * u
    np.testing.assert_allclose(swiglu(g, u), want, rtol=1e-6, atol=1e-30)
