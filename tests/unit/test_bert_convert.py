"""`llamacpy convert` on a tiny random BERT folder, the bert model against a numpy forward of the same
weights, pooling and normalisation (no download: the real model is in tests/e2e/test_bert.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from bertref import TINY_VOCAB, bert_hidden, tiny_bert_folder

from llamacpy.cli.main import main
from llamacpy.convert import ConvertError, convert_hf
from llamacpy.convert.bert import phantom
from llamacpy.gguf import GGMLType, GGUFFile
from llamacpy.models import load_model
from llamacpy.ops.pooling import normalize, pool
from llamacpy.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    weights, config = tiny_bert_folder(folder)
    return folder, weights, config


def _convert(folder, tmp_path, outtype):
    return GGUFFile(convert_hf(folder, tmp_path / f"tiny-{outtype}.gguf", outtype, progress=lambda _m: None))


def test_metadata_and_tensor_names_are_llama_cpps(tiny, tmp_path):
    folder, _, _ = tiny
    g = _convert(folder, tmp_path, "f16")
    md = g.metadata
    assert g.architecture == "bert"
    assert (md["bert.block_count"], md["bert.embedding_length"], md["bert.feed_forward_length"]) == (2, 64, 128)
    assert (md["bert.attention.head_count"], md["bert.context_length"], md["bert.pooling_type"]) == (4, 32, 1)
    assert md["bert.attention.causal"] is False and md["tokenizer.ggml.model"] == "bert"
    assert md["tokenizer.ggml.token_type_count"] == 2
    ids = {k: md[f"tokenizer.ggml.{k}"] for k in ("bos_token_id", "seperator_token_id", "unknown_token_id",
                                                  "padding_token_id", "mask_token_id")}
    assert ids == {"bos_token_id": 2, "seperator_token_id": 3, "unknown_token_id": 1, "padding_token_id": 0,
                   "mask_token_id": 4}
    tokens = list(md["tokenizer.ggml.tokens"])
    assert tokens[:7] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u2581the", "\u2581cat"]
    assert tokens[TINY_VOCAB.index("##s")] == "s"
    assert list(md["tokenizer.ggml.token_type"][:6]) == [3, 3, 3, 3, 3, 1]  # CONTROL for the special ones
    names = set(g.tensors)
    assert {"token_embd.weight", "token_types.weight", "position_embd.weight", "token_embd_norm.weight",
            "token_embd_norm.bias"} <= names
    for part in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm", "ffn_up", "ffn_down",
                 "layer_output_norm"):
        assert {f"blk.1.{part}.weight", f"blk.1.{part}.bias"} <= names
    assert not any("pooler" in n or "position_ids" in n for n in names)
    types = {n: t.type for n, t in g.tensors.items()}
    assert types["blk.0.attn_q.weight"] == GGMLType.F16 and types["token_embd.weight"] == GGMLType.F16
    assert types["position_embd.weight"] == GGMLType.F32 and types["token_types.weight"] == GGMLType.F32
    assert types["blk.0.attn_q.bias"] == GGMLType.F32 and types["blk.0.layer_output_norm.weight"] == GGMLType.F32


# the forward is llama.cpp's (ggml's tanh GELU table, flash attention over f16 K and V), the reference the
# checkpoint's float32 one with erf GELU: f32 weights measured 1e-3 of the largest value apart
@pytest.mark.parametrize(("outtype", "matrix_type", "tol"), [("f32", GGMLType.F32, 3e-3),
                                                              ("f16", GGMLType.F16, 2e-3),
                                                              ("q8_0", GGMLType.Q8_0, 3e-2)])
def test_model_matches_numpy_forward(tiny, tmp_path, outtype, matrix_type, tol):
    folder, weights, config = tiny
    g = _convert(folder, tmp_path, outtype)
    assert g.tensors["blk.1.ffn_up.weight"].type == matrix_type
    model, tok = load_model(g), Tokenizer.from_gguf(g)
    texts = ["the cat sat on the mat.", "hello world!", "a dog running, cats"]
    ids = [tok.encode(t) for t in texts]
    assert ids[1] == [2, TINY_VOCAB.index("hello"), TINY_VOCAB.index("world"), TINY_VOCAB.index("!"), 3]
    h = model.hidden_states(np.concatenate(ids), [len(i) for i in ids])  # three sequences in one batch
    start = 0
    for seq in ids:
        ref = bert_hidden(weights, config, seq)
        assert np.abs(h[start:start + len(seq)] - ref).max() < tol * np.abs(ref).max()
        start += len(seq)


def test_vocab_txt_folder_and_cls_pooling(tmp_path):
    folder = tmp_path / "m"
    tiny_bert_folder(folder, pooling="cls", tokenizer_json=False)
    g = _convert(folder, tmp_path, "f32")
    assert g.metadata["bert.pooling_type"] == 2
    assert g.metadata["tokenizer.ggml.bos_token_id"] == 2 and g.metadata["tokenizer.ggml.seperator_token_id"] == 3
    assert Tokenizer.from_gguf(g).encode("cats") == [2, TINY_VOCAB.index("cat"), TINY_VOCAB.index("##s"), 3]


def test_phantom_space_vocab():
    """llama.cpp's rule: control tokens as they are, `##` pieces bare, every other piece (even a normal
    `[unused0]`) after a phantom space."""
    got = [phantom(t, k) for t, k in (("[CLS]", 3), ("##ing", 1), ("run", 1), ("[unused0]", 1))]
    assert got == ["[CLS]", "ing", "\u2581run", "\u2581[unused0]"]


def test_bad_folders_are_clear_errors(tiny, tmp_path):
    with pytest.raises(ConvertError, match="no config.json"):
        convert_hf(tmp_path, tmp_path / "x.gguf", progress=lambda _m: None)
    with pytest.raises(ConvertError, match="not a folder"):
        convert_hf(tmp_path / "missing", tmp_path / "x.gguf", progress=lambda _m: None)
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"architectures": ["FalconForCausalLM"]}))
    with pytest.raises(ConvertError, match="FalconForCausalLM is not supported"):
        convert_hf(llama, tmp_path / "x.gguf", progress=lambda _m: None)
    broken = tmp_path / "broken"
    tiny_bert_folder(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ConvertError, match="no model.safetensors"):
        convert_hf(broken, tmp_path / "x.gguf", progress=lambda _m: None)
    with pytest.raises(ConvertError, match="outtype"):
        convert_hf(tiny[0], tmp_path / "x.gguf", "q4_0", progress=lambda _m: None)
    assert not list(tmp_path.glob("x.gguf*"))  # nothing half-written is left


def test_cli_convert_writes_and_reports(tiny, tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    assert main(["convert", str(tiny[0]), "--outfile", str(out), "--outtype", "q8_0"]) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out and re.search(r"\[\s*1/\d+\]", captured.err) and "wrote" in captured.err
    assert GGUFFile(out).metadata["general.file_type"] == 7
    assert main(["convert", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_pooling_kinds():
    h = np.arange(12, dtype=np.float32).reshape(4, 3)  # sequences of 1 and 3 tokens
    assert [p.tolist() for p in pool(h, [1, 3], "mean")] == [[[0, 1, 2]], [[6, 7, 8]]]
    assert [p.tolist() for p in pool(h, [1, 3], "cls")] == [[[0, 1, 2]], [[3, 4, 5]]]
    assert [p.tolist() for p in pool(h, [1, 3], "last")] == [[[0, 1, 2]], [[9, 10, 11]]]
    assert [p.shape for p in pool(h, [1, 3], "none")] == [(1, 3), (3, 3)]
    with pytest.raises(ValueError, match="rank"):
        pool(h, [4], "rank")


def test_normalize_as_common_embd_normalize():
    v = np.array([[3.0, -4.0, 0.0]], np.float32)
    np.testing.assert_allclose(normalize(v, 2), [[0.6, -0.8, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(normalize(v, 1), [[3 / 7, -4 / 7, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(normalize(v, 0), [[3 * 32760 / 4, -32760, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(normalize(v, 3), v / np.cbrt(27 + 64), rtol=1e-6)
    assert normalize(v, -1).tolist() == v.tolist()
    assert normalize(np.zeros((1, 3), np.float32), 2).tolist() == [[0, 0, 0]]
