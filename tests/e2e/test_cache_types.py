"""Quantized KV caches (-ctk/-ctv) against llama-server: the greedy tokens and top-5 logprobs llama-server gave with
each pair of cache types on smollm2 (tests/data/llama_server_cache_types*/, by
scripts/record_llama_server_cache_types.py) come out of llamacpy's engine the same, with the same cache types;
and what a quantized cache must keep working: a context shift (keys dequantized, turned back, re-rotated), slot
files, and the server's flags.

The 85-token prompt is fed 32 tokens at a time: llama.cpp takes it as one batch, and with a quantized cache every
row of its attention is computed alone (the one-chunk kernel), so each row's bits do not depend on the batch; but
llamacpy's matmuls over more than 64 rows go through BLAS in another float order (docs/numerics.md), which this test
is not about. The f16/f16 recording is the control (llama.cpp's tiled attention takes that long prompt whole, so
only its short prompt is replayed here).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from llamacpy.engine import slot_file
from llamacpy.engine.sequence import Sequence
from llamacpy.gguf import GGMLType, GGUFFile
from llamacpy.kernels.simd import HAS_AVX512
from llamacpy.models import load_model
from llamacpy.ops import kv_quant
from llamacpy.sampling.chain import log_softmax

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests/data" / ("llama_server_cache_types" if HAS_AVX512 else "llama_server_cache_types_avx2")
RECORDING = DATA / "SmolLM2-135M-Instruct.Q4_1.json"
TOLERANCE = 0.01  # nats (measured: 0.0003 at most, the recording's 5 decimals)
BATCH = 32

pytestmark = pytest.mark.skipif(not RECORDING.exists(), reason=f"no recording for this instruction set in {DATA}")


@pytest.fixture(scope="module")
def recording(smollm2_path) -> dict:
    rec = json.loads(RECORDING.read_text())
    assert hashlib.sha256(smollm2_path.read_bytes()).hexdigest() == rec["model_sha256"]
    return rec


@pytest.fixture(scope="module")
def model(smollm2_path):
    return load_model(GGUFFile(smollm2_path))


def _types(key: str) -> tuple[GGMLType, GGMLType]:
    return tuple(kv_quant.cache_type(name) for name in key.split("/"))


def _cases():
    if not RECORDING.exists():
        return []
    rec = json.loads(RECORDING.read_text())
    return [(key, i) for key, cases in rec["types"].items() for i, c in enumerate(cases)
            if key != "f16/f16" or len(c["prompt_ids"]) < 64]


@pytest.mark.parametrize("key, case", _cases())
def test_greedy_tokens_and_logprobs_match_llama_server(recording, model, key, case):
    c = recording["types"][key][case]
    seq = Sequence(model, model.new_cache(512, 1, False, *_types(key)), n_batch=BATCH)
    logits = seq.feed(c["prompt_ids"])
    worst = 0.0
    for step, (token, top) in enumerate(zip(c["tokens"], c["top"])):
        lp = log_softmax(logits)
        assert int(np.argmax(lp)) == token, f"{key}: step {step} picked {int(np.argmax(lp))}, llama.cpp {token}"
        worst = max(worst, max(abs(float(lp[t]) - logprob) for t, logprob in top))
        logits = seq.feed([token])
    assert worst < TOLERANCE, f"{key}: logprobs off by {worst:.4f} nats"


def test_every_cache_type_is_recorded(recording):
    recorded = {t for key in recording["types"] for t in key.split("/")}
    assert recorded == set(kv_quant.CACHE_TYPES)


def test_the_rotation_is_walsh_hadamard_and_its_own_inverse():
    n = 64
    h = kv_quant.hadamard(np.eye(n, dtype=np.float32), n)  # rows: H applied to each unit vector
    signs = np.array([[(-1) ** (i & j).bit_count() for j in range(n)] for i in range(n)], np.float32)
    assert np.array_equal(h, signs / np.float32(8.0))
    x = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)
    assert np.allclose(kv_quant.hadamard(kv_quant.hadamard(x, 128), 128), x, atol=1e-6)
    assert kv_quant.rotation(GGMLType.Q8_0, 128, keys=True) == 128
    assert kv_quant.rotation(GGMLType.Q8_0, 128, keys=False) == 64
    assert kv_quant.rotation(GGMLType.Q8_0, 80, keys=True) == 0  # head sizes not a multiple of 64: none
    assert kv_quant.rotation(GGMLType.F16, 128, keys=True) == 0


def test_a_context_shift_moves_quantized_keys_to_their_new_positions(model):
    """Cells moved by a shift hold the keys of the new positions: in layer 0 (whose keys depend on the token and
    its position only) the same as evaluating the kept tokens there afresh, up to one more rounding to the type."""
    tokens = list(range(1000, 1040))
    moved = model.new_cache(64, 1, False, GGMLType.Q8_0, GGMLType.Q8_0)
    seq = Sequence(model, moved, n_batch=BATCH)
    seq.feed(tokens)
    unmoved = moved.decode(moved.k[0][0][:, 20:40], moved.type_k)
    seq.shift(4, 16)  # keep 4, drop 16: tokens 20..39 move to positions 4..23
    fresh = Sequence(model, model.new_cache(64, 1, False, GGMLType.Q8_0, GGMLType.Q8_0), n_batch=BATCH)
    fresh.feed(tokens[:4] + tokens[20:])
    a = moved.decode(moved.k[0][0][:, 4:24], moved.type_k)
    b = fresh.cache.decode(fresh.cache.k[0][0][:, 4:24], fresh.cache.type_k)
    step = np.abs(b).max() / 127
    assert np.abs(a - b).max() < 3 * step  # a few q8_0 steps
    assert np.abs(a - unmoved).max() > 30 * step  # not the keys of their old positions
    np.testing.assert_array_equal(moved.v[0][0][:, 4:24], fresh.cache.v[0][0][:, 4:24])  # values only move


def test_slot_files_keep_the_cache_type(model, tmp_path):
    types = (GGMLType.Q4_0, GGMLType.Q8_0)
    cache = model.new_cache(64, 2, False, *types)
    seq = Sequence(model, cache, n_batch=BATCH)
    prompt = list(range(500, 530))
    last = seq.feed(prompt)
    path = str(tmp_path / "slot.bin")
    slot_file.save(path, model, cache, 0, prompt)
    tokens, _ = slot_file.load(path, model, cache, 1, 64)
    assert tokens == prompt
    for kv in (cache.k, cache.v):
        np.testing.assert_array_equal(kv[3][1][:, :30], kv[3][0][:, :30])
    restored = Sequence(model, cache, seq=1, n_batch=BATCH)
    restored.tokens = list(tokens)
    np.testing.assert_array_equal(restored.feed([7]), seq.feed([7]))
    assert last.shape == (model.args.n_vocab,)
    with pytest.raises(slot_file.SlotFileError, match="Q4_0/Q8_0 KV cache, this server's is F16/F16"):
        slot_file.load(path, model, model.new_cache(64, 1), 0, 64)
