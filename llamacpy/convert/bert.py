"""BERT (BertModel and its heads) -> GGUF arch `bert`, as convert_hf_to_gguf.py's BertModel writes it.

Hyperparameters under `bert.*`, non-causal attention, the sentence-transformers pooling (1_Pooling) as
`bert.pooling_type`; the WordPiece vocabulary in llama.cpp's phantom-space form (word-initial pieces get a
U+2581 prefix, `##` continuations lose theirs, control tokens stay as they are) named by llama.cpp's
pre-tokenizer hash; the weights under llama.cpp's names (token_embd, token_types, position_embd,
token_embd_norm, blk.N.attn_q ...). A folder with only vocab.txt is read too (pre-tokenizer "default").
"""

from __future__ import annotations

from pathlib import Path

from . import vocab
from .common import ConvertError, read_json
from .special_vocab import SpecialVocab
from .text_model import TextModel

# sentence-transformers pooling flags -> llama.cpp's pooling type (gguf.PoolingType: MEAN 1, CLS 2, LAST 3)
POOLING_FLAGS = (("pooling_mode_mean_tokens", 1), ("pooling_mode_cls_token", 2), ("pooling_mode_lasttoken", 3))
POOLING_MODES = {"mean": 1, "cls": 2, "lasttoken": 3}
SKIPPED = ("embeddings.position_ids", "pooler.", "cls.predictions", "cls.seq_relationship")
SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")
SPECIAL_TEXTS = {"bos": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "pad": "[PAD]", "mask": "[MASK]"}


def pooling_type(folder: Path) -> int | None:
    """_try_set_pooling_type: the Pooling module of modules.json (or 1_Pooling) -> llama.cpp's pooling type."""
    path = folder / "1_Pooling"
    if (folder / "modules.json").is_file():
        for mod in read_json(folder / "modules.json"):
            if str(mod.get("type", "")).endswith("Pooling"):
                path = folder / mod.get("path", "")
                break
    if not (path / "config.json").is_file():
        return None
    flags = read_json(path / "config.json")
    for key, kind in POOLING_FLAGS:
        if flags.get(key):
            return kind
    if flags.get("pooling_mode") in POOLING_MODES:
        return POOLING_MODES[flags["pooling_mode"]]
    raise ConvertError(f"{path / 'config.json'}: only mean, cls and last-token pooling are supported")


def vocab_txt(folder: Path) -> tuple[list[str], list[int]]:
    """Tokens and types of a vocab.txt (no tokenizer.json): special_tokens_map.json's tokens are control."""
    vt = folder / "vocab.txt"
    if not vt.is_file():
        raise ConvertError(f"{folder}: no tokenizer.json or vocab.txt")
    tokens = vt.read_text(encoding="utf-8").splitlines()
    names = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    if (folder / "special_tokens_map.json").is_file():
        values = read_json(folder / "special_tokens_map.json").values()
        names = {v["content"] if isinstance(v, dict) else v for v in values if isinstance(v, (str, dict))}
    return tokens, [vocab.CONTROL if t in names else vocab.NORMAL for t in tokens]


def phantom(token: str, kind: int) -> str:
    """WordPiece -> llama.cpp's phantom-space form."""
    if kind == vocab.CONTROL:
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


class Bert(TextModel):
    arch = "BERT"
    keep_f32 = ("position_embd", "token_types")

    def set_parameters(self, gw) -> None:
        import gguf

        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if key not in self.hparams:
                raise ConvertError(f"{self.folder / 'config.json'}: {key} is missing")
        if self.hparams.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise ConvertError(f"{self.folder / 'config.json'}: hidden_act {self.hparams['hidden_act']!r} "
                               "is not supported")
        if self.hparams.get("position_embedding_type", "absolute") != "absolute":
            raise ConvertError(f"{self.folder / 'config.json'}: only absolute position embeddings are supported")
        super().set_parameters(gw)
        gw.add_causal_attention(False)
        if (pooling := pooling_type(self.folder)) is not None:
            gw.add_pooling_type(gguf.PoolingType(pooling))

    def set_vocab(self, gw) -> None:
        if (self.folder / "tokenizer.json").is_file():
            model = read_json(self.folder / "tokenizer.json").get("model", {})
            if model.get("type") != "WordPiece":
                raise ConvertError(f"{self.folder / 'tokenizer.json'}: a BERT model needs a WordPiece tokenizer, "
                                   f"found {model.get('type')!r}")
            # beyond llama.cpp (which refuses a WordPiece vocabulary whose hash it does not list): "default",
            # since llama.cpp's WPM tokenizer does not read the name
            tokens, types, pre = vocab.vocab_base(self.folder, None, unknown_pre="default")
        else:
            (tokens, types), pre = vocab_txt(self.folder), "default"
        gw.add_token_type_count(int(self.hparams.get("type_vocab_size", 1)))
        gw.add_tokenizer_model("bert")
        gw.add_tokenizer_pre(pre)
        gw.add_token_list([phantom(t, k) for t, k in zip(tokens, types, strict=True)])
        gw.add_token_types(types)
        special = SpecialVocab(self.folder, n_vocab=len(tokens))
        for typ, text in SPECIAL_TEXTS.items():  # a vocab.txt folder names its special tokens only by their text
            if typ not in special.special_token_ids and text in tokens and typ in SPECIAL_TYPES:
                special.special_token_ids[typ] = tokens.index(text)
        special.add_to_gguf(gw)

    def skip(self, name: str) -> bool:
        return name.removeprefix("bert.").startswith(SKIPPED)

    def gguf_name(self, name: str) -> str:
        name = name.removeprefix("bert.")
        name = name[:-6] + ".weight" if name.endswith(".gamma") else name[:-5] + ".bias" if name.endswith(".beta") \
            else name
        new = self.names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConvertError(f"cannot map tensor {name!r} to a llama.cpp name")
        return new

    def plan(self, outtype: str):
        plan = list(super().plan(outtype))
        if not any(name == "token_embd.weight" for name, *_ in plan):
            raise ConvertError(f"{self.folder}: no word embeddings (embeddings.word_embeddings.weight)")
        return plan
