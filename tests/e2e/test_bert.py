"""all-MiniLM-L6-v2 (a real BERT) end to end: `pull` converts it, the WordPiece tokenizer agrees with
Hugging Face's `tokenizers`, and the embeddings match sentence-transformers' numbers and a float32 numpy
forward of the original safetensors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from bertref import sentence_embedding

from llamacpy import catalog as cat
from llamacpy.convert import CONVERT_VERSION, convert_hf
from llamacpy.gguf import GGUFFile
from llamacpy.models import load_model
from llamacpy.ops.pooling import normalize, pool
from llamacpy.tokenizer import Tokenizer

FOOD, BREAD = "A man is eating food.", "A man is eating a piece of bread."
SBERT_COSINE = 0.7553  # sentence-transformers' all-MiniLM-L6-v2 (mean pooling, L2): cos(FOOD, BREAD)
SENTENCES = [FOOD, BREAD, "The weather is lovely today, isn't it?", "x",
             "Embeddings map text to vectors; similar meanings land close together."]


def _embed(g: GGUFFile, texts: list[str]) -> np.ndarray:
    model, tok = load_model(g), Tokenizer.from_gguf(g)
    ids = [tok.encode(t) for t in texts]
    lengths = [len(i) for i in ids]
    hidden = model.hidden_states(np.concatenate(ids), lengths)
    return np.concatenate([normalize(v, 2) for v in pool(hidden, lengths, "mean")])


@pytest.fixture(scope="module")
def reference(minilm_hf):
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer as HFTokenizer

    weights = load_file(str(minilm_hf / "model.safetensors"))
    config = json.loads((minilm_hf / "config.json").read_text())
    hf = HFTokenizer.from_file(str(minilm_hf / "tokenizer.json"))
    hf.no_padding()  # the file pads every input to 128 tokens
    hf.no_truncation()
    return np.stack([sentence_embedding(weights, config, hf.encode(t).ids) for t in SENTENCES]), hf


@pytest.mark.slow
def test_pulled_model_is_a_verified_f16_bert(minilm_path):
    g = GGUFFile(minilm_path)
    assert g.architecture == "bert" and g.metadata["general.file_type"] == 1
    assert g.metadata["bert.pooling_type"] == 1 and g.metadata["bert.attention.causal"] is False
    stamp = minilm_path.with_suffix(".gguf.sha256").read_text().split()
    assert stamp == [cat.catalog()["all-minilm-l6-v2"].sha256, "f16", "convert", str(CONVERT_VERSION)]
    messages = []
    assert cat.pull("all-minilm-l6-v2", progress=messages.append) == minilm_path
    assert messages == []  # a verified conversion is reused


@pytest.mark.slow
def test_reference_cosine_and_f16_embeddings(minilm_path, reference):
    ref, _ = reference
    assert float(ref[0] @ ref[1]) == pytest.approx(SBERT_COSINE, abs=5e-5)  # the reference itself is right
    e = _embed(GGUFFile(minilm_path), SENTENCES)
    assert float(e[0] @ e[1]) == pytest.approx(SBERT_COSINE, abs=3e-4)
    assert np.abs(e - ref).max() < 5e-4  # f16 weights (measured 9e-5)


@pytest.mark.slow
def test_f32_conversion_matches_numpy_forward(minilm_hf, reference, tmp_path):
    ref, _ = reference
    g = GGUFFile(convert_hf(minilm_hf, tmp_path / "minilm-f32.gguf", "f32", progress=lambda _m: None))
    e = _embed(g, SENTENCES)
    # llamacpy computes as llama.cpp does (ggml's tanh GELU table, flash attention over f16 K and V: the tiny
    # encoders of test_arch_recordings.py agree with llama-server to 5e-7), not as this float32 forward with
    # erf GELU: measured 2.4e-4 apart (1.5e-7 with the float32 forward's own GELU and attention)
    assert np.abs(e - ref).max() < 5e-4
    assert float(e[0] @ e[1]) == pytest.approx(SBERT_COSINE, abs=3e-4)


def _cases() -> list[str]:
    fixed = ["A man is eating food.", "Hello, world!", "Café naïve résumé", "don't stop", "e-mail: a@b.com",
             "3.14159 + 2 = 5.14", "日本語のテキスト", "中文分词测试", "Ünïcödé ÀÉÎÕÜ", "   lots   of    space  ",
             "tab\there\nnewline", "emoji 😀 test", "supercalifragilisticexpialidocious", "unaffable", "Привет мир",
             "Γειά σου Κόσμε", "مرحبا بالعالم", "ﬁ ligature", "x²", "½ cup", "HTTP/1.1 404", "C++ and C#",
             "$100 & 50%", "#hashtag @user", "ok...", "a—b–c", "“quoted” ‘single’", "über-cool", "naïveté", "Ⅻ",
             "\u200bzero width", "a\u0301", "ß straße", "İstanbul", "[CLS] parsed [SEP] as special", ""]
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "embeddings", "are", "useful", "for",
             "search", "retrieval", "café", "jalapeño", "東京", "ümlaut", "don't", "it's", "42", "3.5", "x-ray", "e.g.",
             "U.S.A.", "co-operate", "reëlect"]
    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()-_/\\@#$%^&*~`|<>{}[]+="
                 "éèêëàâäôöûüçñßæœøåÅÉÈ日本中文абв")
    fixed += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 15))) for _ in range(200)]
    fixed += ["".join(rng.choice(chars) for _ in range(rng.randint(1, 40))) for _ in range(200)]
    return fixed


@pytest.mark.slow
def test_wordpiece_ids_match_hf_tokenizers(minilm_path, reference):
    _, hf = reference
    tok = Tokenizer.from_gguf(GGUFFile(minilm_path))
    cases = _cases()
    differ = [c for c in cases if tok.encode(c, add_special=True, parse_special=True) != hf.encode(c).ids]
    assert len(cases) == 436 and differ == []



@pytest.mark.slow
def test_python_api_like_llama_cpp_python(minilm_path, reference, smollm2_path):
    from llamacpy import Llama

    ref, _ = reference
    llm = Llama(model_path=str(minilm_path), verbose=False)
    r = llm.create_embedding(SENTENCES[:2])
    assert r["object"] == "list" and [d["index"] for d in r["data"]] == [0, 1]
    assert r["usage"] == {"prompt_tokens": 19, "total_tokens": 19}
    got = np.array([d["embedding"] for d in r["data"]])
    assert np.abs(got - ref[:2]).max() < 5e-4
    one = llm.embed(FOOD)
    assert len(one) == 384 and np.abs(np.array(one) - got[0]).max() < 1e-6
    raw = np.array(llm.embed(FOOD, normalize=False))
    assert np.linalg.norm(raw) > 1.5 and np.abs(raw / np.linalg.norm(raw) - got[0]).max() < 1e-6
    with pytest.raises(ValueError, match="embedding model"):
        llm.complete("x")
    per_token = Llama(str(minilm_path), verbose=False, embedding=True, pooling_type=0).embed([FOOD])
    assert len(per_token[0]) == 8 and np.abs(np.mean(per_token[0], axis=0) - raw).max() < 1e-4
    decoder = Llama(str(smollm2_path), n_ctx=256, verbose=False)
    with pytest.raises(RuntimeError, match="embedding=True"):
        decoder.embed("x")
    assert len(Llama(str(smollm2_path), n_ctx=256, verbose=False, embedding=True, pooling_type="last").embed("x")) == 576
