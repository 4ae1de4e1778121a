"""LoRA adapters against llama-server: scripts/make_lora_adapter.py's adapter for smollm2 (rebuilt here, checked by
its sha256), and the greedy tokens and top-5 logprobs llama-server gave at each scale (tests/data/llama_server_lora*/,
by scripts/record_llama_server_lora.py) come out of llamacpy the same; the loader refuses what llama.cpp refuses."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from llamacpy.engine.sequence import Sequence
from llamacpy.gguf import GGUFFile
from llamacpy.kernels.simd import HAS_AVX512
from llamacpy.models import ModelError, load_model
from llamacpy.models.lora import LoraSet, load_adapter
from llamacpy.ops.lora import LoraWeight, delta
from llamacpy.sampling.chain import log_softmax
from llamacpy.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import make_lora_adapter

DATA = ROOT / "tests/data" / ("llama_server_lora" if HAS_AVX512 else "llama_server_lora_avx2")
RECORDING = DATA / "SmolLM2-135M-Instruct.Q4_1.json"
TOLERANCE = 0.01  # nats (measured: 0.0003, the recording's 5 decimals)

pytestmark = pytest.mark.skipif(not RECORDING.exists(), reason=f"no recording for this instruction set in {DATA}")


@pytest.fixture(scope="module")
def recording() -> dict:
    return json.loads(RECORDING.read_text())


@pytest.fixture(scope="module")
def adapter_path(smollm2_path, recording, tmp_path_factory) -> Path:
    path = make_lora_adapter.make(smollm2_path, tmp_path_factory.mktemp("lora") / "lora.gguf")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recording["adapter_sha256"]
    return path


@pytest.fixture(scope="module")
def setup(smollm2_path, adapter_path, recording):
    assert hashlib.sha256(smollm2_path.read_bytes()).hexdigest() == recording["model_sha256"]
    g = GGUFFile(smollm2_path)
    model = load_model(g)
    return model, Tokenizer.from_gguf(g), LoraSet(model, [load_adapter(adapter_path, model)], (1.0,))


def _check(setup, cases: list[dict], scale: float) -> None:
    model, tok, lora = setup
    lora.use((scale,))
    for c in cases:
        seq = Sequence(model, model.new_cache(256))
        logits = seq.feed(tok.encode(c["request"]["prompt"], add_special=True, parse_special=True))
        worst = 0.0
        for step, (token, top) in enumerate(zip(c["tokens"], c["top"])):
            lp = log_softmax(logits)
            assert int(np.argmax(lp)) == token, f"scale {scale}: step {step}"
            worst = max(worst, max(abs(float(lp[t]) - logprob) for t, logprob in top))
            logits = seq.feed([token])
        assert worst < TOLERANCE, f"scale {scale}: logprobs off by {worst:.4f} nats"


@pytest.mark.parametrize("key, scale", [("scale 1 (--lora)", 1.0), ("scale 0.5 (request)", 0.5),
                                        ("scale 0 (request)", 0.0), ("scale 0.25 (POST /lora-adapters)", 0.25)])
def test_greedy_tokens_and_logprobs_match_llama_server(setup, recording, key, scale):
    _check(setup, recording["lora"][key], scale)


def test_scale_zero_is_the_base_model(recording):
    base, zero = recording["base"], recording["lora"]["scale 0 (request)"]
    assert [c["tokens"] for c in base] == [c["tokens"] for c in zero]
    assert [c["tokens"] for c in base] != [c["tokens"] for c in recording["lora"]["scale 0.5 (request)"]]


def test_adapters_are_applied_in_the_fused_steps_place(setup):
    """A forward with an adapter leaves the fused decode step (which has none); without one it is back."""
    model, _, lora = setup
    lora.use((0.5,))
    assert model.lora_active and model._layer_steps() is not None
    lora.use((0.0,))
    assert not model.lora_active


def test_f16_products_in_ggml_order_differ_from_plain_f32():
    """The point of emulating ggml: plain f32 products of the same values give other bits."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 576)).astype(np.float16)
    b = (rng.standard_normal((576, 8)) * 0.02).astype(np.float16)
    w = LoraWeight(a.astype(np.float32), b.astype(np.float32), a.view(np.uint16), b.view(np.uint16))
    x = rng.standard_normal((6, 576)).astype(np.float32)
    exact = delta(x, w, np.float32(2.0))
    x16 = x.astype(np.float16).astype(np.float32)
    plain = (x16 @ w.a.T).astype(np.float16).astype(np.float32) @ w.b.T * np.float32(2.0)
    assert np.allclose(exact, plain, rtol=1e-5, atol=1e-6) and not np.array_equal(exact, plain)
    one = delta(x[:1], w, np.float32(2.0))  # decode: vec_dot_f16's order, not tinyBLAS's
    assert np.allclose(one, exact[:1], rtol=1e-5, atol=1e-6)


def _adapter(path: Path, arch: str, tensors: dict, general_type: str = "adapter") -> Path:
    w = GGUFWriter(str(path), arch)
    w.add_string("general.type", general_type)
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", 8.0)
    for name, array in tensors.items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch, tensors, general_type, message", [
    ("llama", {}, "model", "expect general.type to be 'adapter'"),
    ("qwen2", {}, "adapter", "model arch and LoRA arch mismatch"),
    ("llama", {"blk.0.attn_q.weight.lora_a": np.zeros((4, 576), np.float32)}, "adapter", "missing one component"),
    ("llama", {"blk.0.attn_q.weight.lora_x": np.zeros((4, 576), np.float32)}, "adapter", "unexpected suffix"),
    ("llama", {"blk.99.attn_q.weight.lora_a": np.zeros((4, 576), np.float32),
               "blk.99.attn_q.weight.lora_b": np.zeros((576, 4), np.float32)}, "adapter", "does not exist in base"),
    ("llama", {"blk.0.attn_q.weight.lora_a": np.zeros((4, 100), np.float32),
               "blk.0.attn_q.weight.lora_b": np.zeros((576, 4), np.float32)}, "adapter", "incorrect shape"),
    ("llama", {"blk.0.attn_q.weight.lora_a": np.zeros((4, 576), np.float32),
               "blk.0.attn_q.weight.lora_b": np.zeros((576, 5), np.float32)}, "adapter", "not transposed"),
])
def test_bad_adapters_are_refused_as_llama_cpp_refuses_them(setup, tmp_path, arch, tensors, general_type, message):
    model = setup[0]
    path = _adapter(tmp_path / "bad.gguf", arch, tensors, general_type)
    with pytest.raises(ModelError, match=message):
        load_adapter(path, model)
    with pytest.raises(ModelError, match="failed to load LoRA adapter"):
        load_adapter(tmp_path / "missing.gguf", model)
