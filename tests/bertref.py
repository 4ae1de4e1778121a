"""For the BERT tests: a float32 numpy BERT forward straight from safetensors weights (an independent
reference for llamacpy's bert model), and a tiny random BERT folder in Hugging Face's layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def bert_hidden(weights: dict, config: dict, ids: list[int]) -> np.ndarray:
    """transformers' BertModel last_hidden_state for one sequence (token type 0, no padding)."""
    g = weights.__getitem__
    n, d, n_head = len(ids), config["hidden_size"], config["num_attention_heads"]
    hd, eps = d // n_head, config.get("layer_norm_eps", 1e-12)
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:n] \
        + g("embeddings.token_type_embeddings.weight")[0]
    x = _layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    erf = np.vectorize(math.erf, otypes=[np.float32])
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(h: np.ndarray, name: str) -> np.ndarray:
            return h @ g(p + name + ".weight").T + g(p + name + ".bias")  # noqa: B023 - p is this layer's

        q, k, v = (lin(x, f"attention.self.{t}").reshape(n, n_head, hd).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(hd))
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, d)
        x = _layer_norm(x + lin(a, "attention.output.dense"), g(p + "attention.output.LayerNorm.weight"),
                        g(p + "attention.output.LayerNorm.bias"), eps)
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.float32(math.sqrt(2))))
        x = _layer_norm(x + lin(h, "output.dense"), g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"),
                        eps)
    return x.astype(np.float32)


def sentence_embedding(weights: dict, config: dict, ids: list[int]) -> np.ndarray:
    """sentence-transformers: mean pooling, then L2 normalisation."""
    e = bert_hidden(weights, config, ids).mean(0)
    return e / np.linalg.norm(e)


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "a", "dog",
              ".", ",", "run", "##ning", "hello", "world", "!"] + [f"w{i}" for i in range(12)]


def tiny_bert_folder(path: Path, pooling: str = "mean", tokenizer_json: bool = True,
                     seed: int = 0) -> tuple[dict, dict]:
    """A random 2-layer BERT (hidden 64, 4 heads) saved as a sentence-transformers folder; returns its
    weights and config."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    d, ff, n_layer, n_pos = 64, 128, 2, 32
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": d, "intermediate_size": ff,
              "num_hidden_layers": n_layer, "num_attention_heads": 4, "max_position_embeddings": n_pos,
              "type_vocab_size": 2, "vocab_size": len(TINY_VOCAB), "layer_norm_eps": 1e-12, "hidden_act": "gelu"}

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": r(len(TINY_VOCAB), d),
         "embeddings.position_embeddings.weight": r(n_pos, d), "embeddings.token_type_embeddings.weight": r(2, d),
         "embeddings.LayerNorm.weight": 1 + r(d), "embeddings.LayerNorm.bias": r(d),
         "embeddings.position_ids": np.arange(n_pos, dtype=np.int64)[None]}
    for i in range(n_layer):
        p = f"encoder.layer.{i}."
        for name, shape in (("attention.self.query", (d, d)), ("attention.self.key", (d, d)),
                            ("attention.self.value", (d, d)), ("attention.output.dense", (d, d)),
                            ("intermediate.dense", (ff, d)), ("output.dense", (d, ff))):
            w[p + name + ".weight"], w[p + name + ".bias"] = r(*shape), r(shape[0])
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + name + ".weight"], w[p + name + ".bias"] = 1 + r(d), r(d)
    w["pooler.dense.weight"], w["pooler.dense.bias"] = r(d, d), r(d)  # dropped by the converter
    path.mkdir(parents=True, exist_ok=True)
    save_file(w, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False, "pooling_mode_lasttoken": pooling == "last"}))
    if tokenizer_json:
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        cls, sep = TINY_VOCAB.index("[CLS]"), TINY_VOCAB.index("[SEP]")
        (path / "tokenizer.json").write_text(json.dumps({  # as transformers' BertTokenizerFast saves one
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True} for i, t in enumerate(special)],
            "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                           "strip_accents": None, "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                                   "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}}},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(TINY_VOCAB)}}}))
        (path / "tokenizer_config.json").write_text(json.dumps({
            "cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]",
            "mask_token": "[MASK]"}))
    else:
        (path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    return w, config
