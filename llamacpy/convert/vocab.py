"""Hugging Face tokenizers -> GGUF vocabularies, as convert_hf_to_gguf.py writes them.

- `vocab_base` / `gpt2`: a byte-level BPE (or WordPiece) tokenizer.json (tokens, types, merges) named by its
  pre-tokenizer: the check text of llama.cpp's converter is tokenized and the ids' sha256 looked up in its
  table (bpe_pre.json, copied by scripts/extract_bpe_pre_hashes.py), so the names are the ones llama.cpp reads.
- `sentencepiece`: tokenizer.model read with the sentencepiece package (pieces, scores, types), with the added
  tokens of added_tokens.json and tokenizer_config.json on top.
Both end with gguf-py's SpecialVocab (special ids, add_bos/eos, merges, chat template), llama.cpp's own code.
"""

from __future__ import annotations

import json
from hashlib import sha256
from importlib import resources
from pathlib import Path

from .common import ConvertError, read_json
from .special_vocab import SpecialVocab

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def looks_special(token: str) -> bool:
    """convert_hf_to_gguf.py's does_token_look_special: added tokens some models forget to mark special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def bpe_pre_name(tokenizer, unknown: str | None = None) -> str:
    """tokenizer.ggml.pre for a `tokenizers.Tokenizer`, by llama.cpp's check-text hash; a hash llama.cpp does
    not know is an error, or `unknown` where given."""
    table = json.loads(resources.files(__package__).joinpath("bpe_pre.json").read_text(encoding="utf-8"))
    tokenizer.no_truncation()  # a tokenizer.json may cap the length (transformers' encode does not)
    tokenizer.no_padding()
    ids = tokenizer.encode(table["chktxt"]).ids
    chkhsh = sha256(str(ids).encode()).hexdigest()
    if chkhsh not in table["hashes"] and unknown is not None:
        return unknown
    if chkhsh not in table["hashes"]:
        raise ConvertError(f"the BPE pre-tokenizer was not recognized (chkhsh {chkhsh}): llama.cpp's converter "
                           f"does not know it either ({table['source']})")
    return table["hashes"][chkhsh]


def is_llama_spm_json(folder: Path) -> bool:
    """A tokenizer.json in SentencePiece's BPE form (byte fallback), which LlamaHfVocab reads upstream."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return False
    t = read_json(path)
    model = t.get("model", {})
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) \
        and (t.get("decoder") or {}).get("type") == "Sequence"


def vocab_base(folder: Path, n_vocab: int | None, unknown_pre: str | None = None
               ) -> tuple[list[str], list[int], str]:
    """Tokens, token types and the pre-tokenizer name of a tokenizer.json (get_vocab_base: GPT-2 BPE and
    WordPiece vocabularies); ids the vocabulary lacks up to `n_vocab` are [PAD<i>] fill. `unknown_pre`: the
    name for a pre-tokenizer hash llama.cpp does not know (None: an error, as in llama.cpp)."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ConvertError(f"{folder}: no tokenizer.json")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception type
        raise ConvertError(f"{path}: cannot load: {e}") from None
    vocab = tok.get_vocab(with_added_tokens=True)
    n_vocab = n_vocab or len(vocab)
    if max(vocab.values()) >= n_vocab:
        raise ConvertError(f"{path}: token id {max(vocab.values())} is past the model's vocab_size {n_vocab}")
    pre = bpe_pre_name(tok, unknown_pre)
    by_id = {i: t for t, i in vocab.items()}
    added = tok.get_added_tokens_decoder()
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        token = by_id[i]
        if i in added:
            if not added[i].normalized:  # llama.cpp expects added tokens pre-normalized
                token = tok.decode(tok.encode(token, add_special_tokens=False).ids, skip_special_tokens=False)
            if added[i].special or looks_special(token):
                types.append(CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(token)
    return tokens, types, pre


def gpt2(gw, folder: Path, n_vocab: int | None) -> None:
    """Add a byte-level BPE vocabulary (_set_vocab_gpt2)."""
    tokens, types, pre = vocab_base(folder, n_vocab)
    gw.add_tokenizer_model("gpt2")
    gw.add_tokenizer_pre(pre)
    gw.add_token_list(tokens)
    gw.add_token_types(types)
    SpecialVocab(folder, load_merges=True).add_to_gguf(gw)


def sentencepiece(gw, folder: Path, n_vocab: int | None, phi3: bool = False) -> None:
    """Add a SentencePiece vocabulary (_create_vocab_sentencepiece, or Phi3MiniModel.set_vocab's variant with
    `phi3`)."""
    path = folder / "tokenizer.model"
    if not path.is_file():
        raise ConvertError(f"{folder}: no tokenizer.model (this model's vocabulary is SentencePiece)")
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError:  # pragma: no cover - a dependency
        raise ConvertError("converting a SentencePiece vocabulary needs `pip install sentencepiece`") from None
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as e:
        raise ConvertError(f"{path}: cannot load: {e}") from None
    n_vocab = n_vocab or sp.vocab_size()
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [UNUSED] * n_vocab
    for i in range(min(sp.vocab_size(), n_vocab)):
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = (UNKNOWN if sp.IsUnknown(i) else CONTROL if sp.IsControl(i) else UNUSED if sp.IsUnused(i)
                    else BYTE if sp.IsByte(i) else NORMAL)
    if (folder / "added_tokens.json").is_file():
        for text, i in read_json(folder / "added_tokens.json").items():
            if i < n_vocab:
                tokens[i], scores[i], types[i] = text.encode("utf-8"), -1000.0, USER_DEFINED
    added: list[tuple[int, dict]] = []
    if (folder / "tokenizer_config.json").is_file():
        decoder = read_json(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
        added += [(int(i), d) for i, d in decoder.items()]
    if phi3 and (folder / "tokenizer.json").is_file():
        added += [(int(d["id"]), d) for d in read_json(folder / "tokenizer.json").get("added_tokens", [])]
    for i, d in added:
        if i >= n_vocab:
            continue
        text = d["content"]
        if phi3:
            types[i] = CONTROL if d.get("special") else USER_DEFINED
        elif d.get("special") or looks_special(text):
            types[i] = CONTROL
        else:
            text = text.replace("\u2581", " ")
            types[i] = USER_DEFINED
        tokens[i], scores[i] = text.encode("utf-8"), -1000.0
    gw.add_tokenizer_model("llama")
    gw.add_tokenizer_pre("default")
    gw.add_token_list(tokens)
    gw.add_token_scores(scores)
    gw.add_token_types(types)
    SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(gw)
