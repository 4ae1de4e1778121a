"""`llamacpy quantize` on real models: all-MiniLM-L6-v2 f16 -> Q8_0 keeps its embeddings, smollm2 (Q4_1 with a
Q8_0 token_embd) requantized to Q8_0 keeps its text and perplexity."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from test_bert import BREAD, FOOD, SBERT_COSINE, _embed

from llamacpy.gguf import GGMLType, GGUFFile
from llamacpy.kernels import dequantize

TEXT = Path("/usr/share/common-licenses/GPL-3")
# llama.cpp 0c1e570 (AMX off, 2 threads) on the catalog's SmolLM2-135M-Instruct.Q4_1.gguf (sha256 b179c952...):
# `llama-perplexity -f GPL-3 -c 256 -b 256 --chunks 4` before and after `llama-quantize --allow-requantize ... q8_0`
LLAMA_QUANTIZE_Q8_0_SHA256 = "7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508"
LLAMA_CPP_PPL_Q4_1, LLAMA_CPP_PPL_Q8_0 = 19.2681, 19.1354


def _quantize(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacpy", "quantize", *args], capture_output=True, text=True,
                          timeout=600, check=False)


def _q8_0(x: np.ndarray) -> np.ndarray:
    return gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0).view(np.uint8).reshape(x.shape[0], -1)


@pytest.mark.slow
def test_bert_f16_to_q8_0(minilm_path, tmp_path):
    out = tmp_path / "minilm-q8_0.gguf"
    r = _quantize(str(minilm_path), str(out), "Q8_0", "2")
    assert r.returncode == 0, r.stderr
    lines = re.findall(r"^\[ *(\d+)/ *101\] (\S+) +- \[.*\], type = +(\w+), (.*)$", r.stderr, re.MULTILINE)
    assert [int(i) for i, *_ in lines] == list(range(1, 102))
    assert any(n == "blk.0.attn_q.weight" and t == "f16" and rest.startswith("converting to q8_0 .. size =")
               for _, n, t, rest in lines)
    assert re.search(r"quant size  = +\d+\.\d\d MiB \(8\.\d\d BPW\)", r.stderr)
    src, dst = GGUFFile(minilm_path), GGUFFile(out)
    assert dst.metadata["general.file_type"] == 7 and dst.metadata["general.quantization_version"] == 2
    assert dst.raw_kv("tokenizer.ggml.tokens") == src.raw_kv("tokenizer.ggml.tokens")
    for name, t in src.tensors.items():
        q = dst.tensors[name]
        if t.type == GGMLType.F16:  # every f16 matrix, the embeddings included
            x = dequantize(t)
            assert q.type == GGMLType.Q8_0
            np.testing.assert_array_equal(q.data, _q8_0(x), err_msg=name)  # bit-exact with gguf-py
            # half a step at most, plus the f16 rounding of the scale
            assert float(np.abs(dequantize(q) - x).max()) <= float(np.abs(x).max()) * (0.5 / 127 + 2**-10), name
        else:  # norms, biases, position and token-type embeddings stay f32
            assert q.type == t.type and np.array_equal(q.data, t.data), name
    e = _embed(dst, [FOOD, BREAD])
    assert abs(float(e[0] @ e[1]) - SBERT_COSINE) < 0.01  # measured 0.7555 (f16: 0.7553)
    assert np.abs(e - _embed(src, [FOOD, BREAD])).max() < 0.01


def _ppl(path: Path, chunks: int) -> float:
    from llamacpy.api import Llama
    from llamacpy.engine.perplexity import perplexity

    llm = Llama(str(path), n_ctx=256, n_threads=2, n_batch=256)
    tok = llm.tokenizer
    tokens = tok.encode(TEXT.read_text(encoding="utf-8"), add_special=True, parse_special=False)
    return perplexity(llm.model, tokens, 256, chunks, 256, tok.bos_id if tok.add_bos else None).ppl


@pytest.mark.slow
def test_smollm2_requantized_to_q8_0(smollm2_path, tmp_path):
    out = tmp_path / "smollm2-q8_0.gguf"
    refused = _quantize(str(smollm2_path), str(out), "q8_0")
    assert refused.returncode == 1 and "requantizing from type q4_1 is disabled" in refused.stderr
    assert not out.exists()
    r = _quantize("--allow-requantize", str(smollm2_path), str(out), "q8_0", "2")
    assert r.returncode == 0, r.stderr
    assert re.search(r"token_embd\.weight +- \[.*\], type = +q8_0, size = +28\.688 MiB", r.stderr)  # copied
    # byte for byte what llama.cpp 0c1e570 writes: `llama-quantize --allow-requantize <Q4_1 file> out q8_0 2`
    assert hashlib.sha256(out.read_bytes()).hexdigest() == LLAMA_QUANTIZE_Q8_0_SHA256
    src, dst = GGUFFile(smollm2_path), GGUFFile(out)
    assert dst.tensors["token_embd.weight"].type == GGMLType.Q8_0
    w = "blk.7.ffn_down.weight"
    assert src.tensors[w].type == GGMLType.Q4_1 and dst.tensors[w].type == GGMLType.Q8_0
    np.testing.assert_array_equal(dst.tensors[w].data, _q8_0(dequantize(src.tensors[w])))

    from llamacpy.api import Llama

    text = Llama(str(out), n_ctx=128, n_threads=2).complete("The capital of France is", max_tokens=8,
                                                              temperature=0)
    assert "Paris" in text
    if not TEXT.exists():
        pytest.skip("Debian's GPL-3 text (base-files) is not on this machine")
    # each within 1% of llama-perplexity's figure for the same file (their gap, 0.7%, is the requantization's)
    for path, ref in ((smollm2_path, LLAMA_CPP_PPL_Q4_1), (out, LLAMA_CPP_PPL_Q8_0)):
        ppl = _ppl(path, 4)
        assert abs(ppl - ref) / ref < 0.01, (path.name, ppl, ref)


# `llama-quantize --allow-requantize --pure <the catalog's SmolLM2 Q4_1 file> out TYPE 2` (llama.cpp 0c1e570)
LLAMA_QUANTIZE_PURE_SHA256 = {
    "IQ4_NL": "ff5f3823fc4bf48af52dca869f864e589c08b6e43d5ca749ad7b931dfd34d6eb",
    "IQ4_XS": "1c4ad2032b58a4473fd271f82cf11b65fdea5f14fe529e70d1c42065743f8eab",
}
# llama-server on those files: /completion "The capital of France is", n_predict 8, temperature 0
LLAMA_SERVER_TEXT = {"IQ4_NL": " Paris. The capital of the United Kingdom", "IQ4_XS": " the capital of the United Kingdom."}


@pytest.mark.slow
@pytest.mark.parametrize("ftype", sorted(LLAMA_QUANTIZE_PURE_SHA256))
def test_smollm2_requantized_to_iq4(smollm2_path, tmp_path, ftype):
    out = tmp_path / f"smollm2-{ftype}.gguf"
    # (the mixture, with its Q5_K/Q6_K tensors, is checked against llama-quantize in test_quantize_kquants.py)
    r = _quantize("--allow-requantize", "--pure", str(smollm2_path), str(out), ftype, "2")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == LLAMA_QUANTIZE_PURE_SHA256[ftype]

    from llamacpy.api import Llama

    text = Llama(str(out), n_ctx=128, n_threads=2).complete("The capital of France is", max_tokens=8,
                                                              temperature=0)
    assert text == LLAMA_SERVER_TEXT[ftype]
