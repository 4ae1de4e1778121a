"""BERT (BertModel and its heads) -> GGUF arch `bert`, as convert_hf_to_gguf.py's BertModel writes it.

Hyperparameters under `bert.*`, non-causal attention, the sentence-transformers pooling (1_Pooling) as
`bert.pooling_type`; the WordPiece vocabulary in llama.cpp's phantom-space form (word-initial pieces get a
U+2581 prefix, `##` continuations lose theirs, `[...]` tokens stay as they are); the weights under
llama.cpp's names (token_embd, token_types, position_embd, token_embd_norm, blk.N.attn_q ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .common import FILE_TYPES, ConvertError, open_weights, tensor_type, write_gguf

# sentence-transformers pooling flags -> llama.cpp's pooling type (gguf.PoolingType: MEAN 1, CLS 2, LAST 3)
POOLING_FLAGS = (("pooling_mode_mean_tokens", 1), ("pooling_mode_cls_token", 2), ("pooling_mode_lasttoken", 3))
SKIPPED = ("embeddings.position_ids", "pooler.", "cls.predictions", "cls.seq_relationship")
SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")
SPECIAL_TEXTS = {"bos": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "pad": "[PAD]", "mask": "[MASK]"}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4


def pooling_type(folder: Path) -> int | None:
    """The pooling of a sentence-transformers folder (modules.json -> its Pooling module's config), or None."""
    modules = folder / "modules.json"
    path = folder / "1_Pooling"
    if modules.is_file():
        for mod in json.loads(modules.read_text(encoding="utf-8")):
            if mod.get("type") == "sentence_transformers.models.Pooling":
                path = folder / mod.get("path", "")
                break
    config = path / "config.json"
    if not config.is_file():
        return None
    flags = json.loads(config.read_text(encoding="utf-8"))
    for key, kind in POOLING_FLAGS:
        if flags.get(key):
            return kind
    raise ConvertError(f"{config}: only mean, cls and last-token pooling are supported")


def load_vocab(folder: Path) -> tuple[list[str], list[int]]:
    """Token texts (in id order) and their GGUF token types, from tokenizer.json or vocab.txt."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        t = json.loads(tj.read_text(encoding="utf-8"))
        model = t.get("model", {})
        if model.get("type") != "WordPiece":
            raise ConvertError(f"{tj}: a BERT model needs a WordPiece tokenizer, found {model.get('type')!r}")
        by_id = {i: tok for tok, i in model["vocab"].items()}
        added = {a["id"]: a for a in t.get("added_tokens", [])}
        by_id.update({i: a["content"] for i, a in added.items()})
        special = {i for i, a in added.items() if a.get("special")}
    else:
        vt = folder / "vocab.txt"
        if not vt.is_file():
            raise ConvertError(f"{folder}: no tokenizer.json or vocab.txt")
        by_id = dict(enumerate(vt.read_text(encoding="utf-8").splitlines()))
        added = {}
        names = _special_texts(folder)
        special = {i for i, tok in by_id.items() if tok in names}
    if sorted(by_id) != list(range(len(by_id))):
        raise ConvertError(f"{folder}: the vocabulary's ids are not 0..{len(by_id) - 1}")
    tokens = [by_id[i] for i in range(len(by_id))]
    types = [TOKEN_CONTROL if i in special else TOKEN_USER_DEFINED if i in added else TOKEN_NORMAL
             for i in range(len(tokens))]
    return tokens, types


def _special_texts(folder: Path) -> set[str]:
    path = folder / "special_tokens_map.json"
    if not path.is_file():
        return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    values = json.loads(path.read_text(encoding="utf-8")).values()
    return {v["content"] if isinstance(v, dict) else v for v in values if isinstance(v, (str, dict))}


def phantom(token: str) -> str:
    """WordPiece -> llama.cpp's phantom-space form."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def tensor_names(n_layer: int) -> Callable[[str], str | None]:
    """HF name -> llama.cpp name (gguf's TensorNameMap for bert); None for tensors llama.cpp drops."""
    import gguf

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, n_layer)

    def name(hf: str) -> str | None:
        hf = hf.removeprefix("bert.")
        hf = hf[:-6] + ".weight" if hf.endswith(".gamma") else hf[:-5] + ".bias" if hf.endswith(".beta") else hf
        if hf.startswith(SKIPPED):
            return None
        new = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConvertError(f"cannot map tensor {hf!r} to a llama.cpp name")
        return new

    return name


def convert(folder: Path, config: dict, out: Path, outtype: str, progress: Callable[[str], None]) -> None:
    import gguf

    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if key not in config:
            raise ConvertError(f"{folder / 'config.json'}: {key} is missing")
    if config.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ConvertError(f"{folder / 'config.json'}: hidden_act {config['hidden_act']!r} is not supported")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConvertError(f"{folder / 'config.json'}: only absolute position embeddings are supported")
    n_layer = int(config["num_hidden_layers"])
    tokens, types = load_vocab(folder)
    pooling = pooling_type(folder)

    w = gguf.GGUFWriter(None, "bert")
    w.add_name(config.get("_name_or_path") or folder.name)
    w.add_block_count(n_layer)
    w.add_context_length(int(config.get("max_position_embeddings", 512)))
    w.add_embedding_length(int(config["hidden_size"]))
    w.add_feed_forward_length(int(config["intermediate_size"]))
    w.add_head_count(int(config["num_attention_heads"]))
    w.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    w.add_causal_attention(False)
    if pooling is not None:
        w.add_pooling_type(gguf.PoolingType(pooling))
    w.add_file_type(FILE_TYPES[outtype])
    w.add_token_type_count(int(config.get("type_vocab_size", 1)))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list([phantom(t) for t in tokens])
    w.add_token_types(types)
    # "cls" is left out: GGUFWriter has no key for it (llama.cpp reads [CLS] as BOS)
    special = gguf.SpecialVocab(folder, n_vocab=len(tokens), special_token_types=SPECIAL_TYPES)
    for typ, text in SPECIAL_TEXTS.items():  # a vocab.txt folder names its special tokens only by their text
        if typ not in special.special_token_ids and text in tokens:
            special.special_token_ids[typ] = tokens.index(text)
    special.add_to_gguf(w, quiet=True)

    name_of = tensor_names(n_layer)
    weights = open_weights(folder)
    kept = [(name_of(hf), hf) for hf in weights.names()]
    kept = [(name, hf) for name, hf in kept if name is not None]
    if not any(name == "token_embd.weight" for name, _ in kept):
        raise ConvertError(f"{folder}: no word embeddings (embeddings.word_embeddings.weight)")
    keep_f32 = ("position_embd", "token_types")
    plan = [(name, weights.entries[hf].shape,
             tensor_type(name, weights.stored(hf), outtype, keep_f32), lambda hf=hf: weights.float32(hf))
            for name, hf in kept]
    write_gguf(out, w, plan, progress)
