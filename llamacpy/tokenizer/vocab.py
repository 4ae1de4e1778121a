"""The vocabulary as llama.cpp loads it from GGUF metadata (llama_vocab::impl::load).

Besides the token list this reproduces what llama.cpp derives at load time: default and overridden special
token ids, token attributes (including the ones it patches by token text or model name), the end-of-generation
set and the special-token cache used to split prompts.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import numpy as np

from .libstdcxx import iteration_order
from .pretokenize import PRE_NAMES, PreSettings

log = logging.getLogger(__name__)


class Attr(enum.IntFlag):
    """llama_token_attr."""

    UNDEFINED = 0
    UNKNOWN = 1 << 0
    UNUSED = 1 << 1
    NORMAL = 1 << 2
    CONTROL = 1 << 3
    USER_DEFINED = 1 << 4
    BYTE = 1 << 5
    NORMALIZED = 1 << 6
    LSTRIP = 1 << 7
    RSTRIP = 1 << 8
    SINGLE_WORD = 1 << 9


# llama_token_type (GGUF tokenizer.ggml.token_type) -> attribute; anything else is UNDEFINED
_TYPE_TO_ATTR = np.array(
    [Attr.UNDEFINED, Attr.NORMAL, Attr.UNKNOWN, Attr.CONTROL, Attr.USER_DEFINED, Attr.UNUSED, Attr.BYTE],
    dtype=np.int32,
)

SPECIAL_ATTRS = Attr.CONTROL | Attr.USER_DEFINED | Attr.UNKNOWN

KV = "tokenizer.ggml."

# special id keys in the order llama.cpp reads them; the deprecated prefix/suffix/middle keys come last
_SPECIAL_KEYS = [
    ("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"), ("eom", "eom_token_id"),
    ("unk", "unknown_token_id"), ("sep", "seperator_token_id"), ("pad", "padding_token_id"),
    ("mask", "mask_token_id"), ("fim_pre", "fim_pre_token_id"), ("fim_suf", "fim_suf_token_id"),
    ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"), ("fim_rep", "fim_rep_token_id"),
    ("fim_sep", "fim_sep_token_id"), ("fim_pre", "prefix_token_id"), ("fim_suf", "suffix_token_id"),
    ("fim_mid", "middle_token_id"),
]

# token texts llama.cpp recognises when the GGUF does not name the token (auto-detect by text)
_AUTO_DETECT = {
    "eot": ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
            "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"],
    "eom": ["<|eom_id|>"],
    "fim_pre": ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"],
    "fim_suf": ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"],
    "fim_mid": ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"],
    "fim_pad": ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    "fim_rep": ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    "fim_sep": ["<|file_sep|>"],
}

_EOG_TEXTS = [
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
]

# default special ids per tokenizer.ggml.model (bos, eos, unk, sep, pad, mask)
_DEFAULTS: dict[str, dict[str, int | None]] = {
    "spm": {"bos": 1, "eos": 2, "unk": 0, "sep": None, "pad": None, "mask": None},
    "wpm": {"bos": 101, "eos": None, "unk": 100, "sep": 102, "pad": 0, "mask": 103},
    "bpe": {"bos": 11, "eos": 11, "unk": None, "sep": None, "pad": None, "mask": None},
    "gemma4": {"bos": None, "eos": None, "unk": None, "sep": None, "pad": None, "mask": None},
    "ugm": {"bos": None, "eos": 1, "unk": 2, "sep": None, "pad": 0, "mask": None},
}

_MODEL_TYPES = {"llama": "spm", "bert": "wpm", "gpt2": "bpe", "gemma4": "bpe", "t5": "ugm"}


class Vocab:
    """Token texts, scores, attributes and the flags llama.cpp's tokenizer and detokenizer consult."""

    def __init__(self, md: dict[str, Any]):
        if KV + "model" not in md:
            raise ValueError("the file has no tokenizer (tokenizer.ggml.model is missing): llamacpy needs the "
                             "vocabulary inside the GGUF, as llama.cpp does")
        self.model = md[KV + "model"]
        if self.model not in _MODEL_TYPES:
            raise ValueError(f"unsupported tokenizer model: {self.model!r}")
        self.type = _MODEL_TYPES[self.model]
        self.pre = "gemma4" if self.model == "gemma4" else md.get(KV + "pre", "")
        self._load_tokens(md)
        self._load_flags(md)
        self._load_special_ids(md)
        self._detect_by_text()
        self._build_eog()
        self._patch_attrs_by_name(md)
        self.special_cache = self._special_cache()

    # -- tokens ------------------------------------------------------------------------------------------

    def _load_tokens(self, md: dict[str, Any]) -> None:
        tokens = md[KV + "tokens"]
        if "" in tokens:
            tokens = [t or f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.tokens: list[str] = tokens
        self.n_tokens = len(tokens)
        self.token_to_id: dict[str, int] = dict(zip(tokens, range(len(tokens))))
        self.max_token_len = max((len(t.encode()) for t in tokens), default=0) if self.type == "wpm" else 0
        scores = md.get(KV + "scores")
        self.scores = (np.asarray(scores, dtype=np.float32)[: self.n_tokens] if scores is not None
                       else np.zeros(self.n_tokens, dtype=np.float32))
        types = md.get(KV + "token_type")
        if types is None:
            self.attrs = np.full(self.n_tokens, int(Attr.NORMAL), dtype=np.int32)
        else:
            types = np.asarray(types, dtype=np.int64)[: self.n_tokens]
            ok = (types >= 0) & (types < len(_TYPE_TO_ATTR))
            self.attrs = np.where(ok, _TYPE_TO_ATTR[np.clip(types, 0, len(_TYPE_TO_ATTR) - 1)], 0).astype(np.int32)

    def attr(self, token_id: int) -> Attr:
        return Attr(int(self.attrs[token_id]))

    def _set_attr(self, token_id: int, flag: Attr, value: bool = True) -> None:
        if value:
            self.attrs[token_id] |= int(flag)
        else:
            self.attrs[token_id] &= ~int(flag)

    # -- flags -------------------------------------------------------------------------------------------

    def _load_flags(self, md: dict[str, Any]) -> None:
        self.add_space_prefix = False
        self.add_bos = self.add_eos = self.add_sep = False
        self.ignore_merges = False
        self.clean_spaces = False
        self.escape_whitespaces = True
        self.no_bos = False
        self.pre_settings: PreSettings | None = None
        if self.type == "bpe":
            name = self.pre or "default"
            if name not in PRE_NAMES:
                raise ValueError(f"unknown pre-tokenizer type: {name!r}")
            s = self.pre_settings = PRE_NAMES[name]
            self.escape_whitespaces = s.escape_whitespaces
            self.clean_spaces = s.clean_spaces
            self.ignore_merges = s.ignore_merges
            self.add_bos, self.add_sep, self.no_bos = s.add_bos, s.add_sep, s.no_bos
        elif self.type == "spm":
            self.add_space_prefix = True
            self.add_bos = True
        elif self.type == "wpm":
            self.clean_spaces = True
            self.add_bos = self.add_sep = True
        elif self.type == "ugm":
            self.add_eos = True
        self.add_space_prefix = bool(md.get(KV + "add_space_prefix", self.add_space_prefix))
        self.remove_extra_whitespaces = bool(md.get(KV + "remove_extra_whitespaces", False))
        self.add_bos = bool(md.get(KV + "add_bos_token", self.add_bos))
        self.add_eos = bool(md.get(KV + "add_eos_token", self.add_eos))
        self.add_sep = bool(md.get(KV + "add_sep_token", self.add_sep))
        if self.pre_settings is not None and self.pre_settings.regex_type == "gemma4":
            self.add_bos = True  # llama.cpp forces BOS for Gemma 4
        self.lowercase = bool(md.get(KV + "normalizer.lowercase", True))
        self.strip_accents = bool(md.get(KV + "normalizer.strip_accents", self.lowercase))

    # -- special ids -------------------------------------------------------------------------------------

    def _load_special_ids(self, md: dict[str, Any]) -> None:
        ids: dict[str, int | None] = dict.fromkeys(
            ["eot", "eom", "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep"])
        ids.update(_DEFAULTS["gemma4" if self.model == "gemma4" else self.type])
        if self.no_bos:
            ids["bos"] = None
        for name, key in _SPECIAL_KEYS:
            if ids[name] is not None and ids[name] >= self.n_tokens:
                ids[name] = None
            value = md.get(KV + key)
            if value is None:
                continue
            if 0 <= int(value) < self.n_tokens:
                ids[name] = int(value)
            else:
                log.warning("bad special token: %s = %s, using default %s", key, value, ids[name])
        self.ids = ids

    def _detect_by_text(self) -> None:
        # llama.cpp takes the first candidate its std::unordered_map yields, so ties follow libstdc++'s order
        rank: np.ndarray | None = None
        for name, texts in _AUTO_DETECT.items():
            if self.ids[name] is not None:
                continue
            found = [self.token_to_id[t] for t in texts if t in self.token_to_id]
            if len(found) > 1:
                if rank is None:
                    order = iteration_order(self.tokens, len(self.token_to_id) == self.n_tokens)
                    rank = np.empty(self.n_tokens, dtype=np.int64)
                    rank[order] = np.arange(len(order))
                found.sort(key=lambda t: rank[t])
            if found:
                self.ids[name] = found[0]
                self._set_attr(found[0], Attr.CONTROL)
        control = np.nonzero(self.attrs & int(Attr.CONTROL))[0]
        for i in control:
            if "unused" in self.tokens[i]:
                self._set_attr(int(i), Attr.UNUSED)

    def _build_eog(self) -> None:
        eog = {self.ids[k] for k in ("fim_pad", "fim_rep", "fim_sep") if self.ids[k] is not None}
        for text in _EOG_TEXTS:
            if text in self.token_to_id:
                tid = self.token_to_id[text]
                eog.add(tid)
                self._set_attr(tid, Attr.CONTROL)
        for text in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):  # gpt-oss: always render
            if text in self.token_to_id:
                self.attrs[self.token_to_id[text]] = int(Attr.USER_DEFINED)
        eog |= {self.ids[k] for k in ("eos", "eot", "eom") if self.ids[k] is not None}
        texts = {self.tokens[t]: t for t in eog if 0 <= t < self.n_tokens}
        # o200k_harmony / solar-open: <|end|> is not end-of-generation when <|return|>+<|call|> exist
        has_call = "<|call|>" in texts or "<|calls|>" in texts
        if "<|end|>" in texts and has_call and ("<|return|>" in texts or "<|flush|>" in texts):
            eog.discard(texts["<|end|>"])
            self.attrs[texts["<|end|>"]] = int(Attr.USER_DEFINED)
        # gemma4 and plamo have a normal </s>
        if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
            eog.discard(texts["</s>"])
            self.attrs[texts["</s>"]] = int(Attr.NORMAL)
        self.eog_ids = eog

    def _special_cache(self) -> list[int]:
        ids = np.nonzero(self.attrs & int(SPECIAL_ATTRS))[0].tolist()
        return sorted(ids, key=lambda i: -len(self.tokens[i].encode()))

    def _patch_attrs_by_name(self, md: dict[str, Any]) -> None:
        name = str(md.get("general.name", "")).lower()
        pre = str(md.get(KV + "pre", ""))
        arch = str(md.get("general.architecture", ""))
        if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
                s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
            if "<mask>" in self.token_to_id:
                self._set_attr(self.token_to_id["<mask>"], Attr.LSTRIP)
        elif "phi-3" in name or "phi3" in name:
            for tid in np.nonzero(self.attrs & int(SPECIAL_ATTRS))[0]:
                self._set_attr(int(tid), Attr.RSTRIP)
            for text, value in (("</s>", True), ("<unk>", False), ("<s>", False), ("<|endoftext|>", False)):
                self._set_attr(self.token_to_id[text], Attr.RSTRIP, value)
        elif "modern-bert" in name and "[MASK]" in self.token_to_id:
            self._set_attr(self.token_to_id["[MASK]"], Attr.LSTRIP)

    # -- lookups -----------------------------------------------------------------------------------------

    def byte_token(self, byte: int) -> int | None:
        """byte_to_token for SPM-style vocabularies: <0xXX>, else the byte itself as text."""
        tid = self.token_to_id.get(f"<0x{byte:02X}>")
        if tid is None and byte < 0x80:
            tid = self.token_to_id.get(chr(byte))
        return tid
