"""gguf-py's SpecialVocab as llama.cpp 0c1e570 has it (gguf-py/gguf/vocab.py).

The `gguf` release on PyPI (0.19.0) predates four changes that llama.cpp's converter makes at 0c1e570, and a
converted file differs without them (measured: scripts/record_llama_convert.py's recordings):
- a ByteLevel post-processor says "no BOS, no EOS" (add_bos_token / add_eos_token false) unless another
  processor or tokenizer_config.json says otherwise;
- the post-processor's flags win over tokenizer_config.json's add_*_token;
- a TemplateProcessing's leading special token becomes BOS (and CLS) when tokenizer_config names none;
- the normalizer's lowercase / strip_accents become tokenizer.ggml.normalizer.* keys.
Everything else (merges, special ids from config.json, chat templates) is gguf-py's own code, inherited.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf


class SpecialVocab(gguf.SpecialVocab):
    normalizer_lowercase: bool | None = None
    normalizer_strip_accents: bool | None = None

    def add_to_gguf(self, gw, quiet: bool = True) -> None:
        super().add_to_gguf(gw, quiet=quiet)
        # (gguf 0.19.0's GGUFWriter has no add_normalizer_* either: the keys of 0c1e570's gguf-py)
        if self.normalizer_lowercase is not None:
            gw.add_bool("tokenizer.ggml.normalizer.lowercase", self.normalizer_lowercase)
        if self.normalizer_strip_accents is not None:
            gw.add_bool("tokenizer.ggml.normalizer.strip_accents", self.normalizer_strip_accents)

    def _parse_normalizer(self, normalizer: dict) -> None:
        kind = normalizer.get("type")
        if kind == "Lowercase":
            self.normalizer_lowercase = True
        elif kind == "StripAccents":
            self.normalizer_strip_accents = True
        elif kind == "BertNormalizer":
            self.normalizer_lowercase = normalizer.get("lowercase", self.normalizer_lowercase)
            self.normalizer_strip_accents = normalizer.get("strip_accents", self.normalizer_strip_accents)
        elif kind == "Sequence":
            for n in normalizer.get("normalizers", []):
                self._parse_normalizer(n)

    def _try_load_from_tokenizer_json(self, path: Path) -> bool:
        tokenizer, added = None, []
        if (path / "tokenizer.json").is_file():
            tokenizer = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
            if self.load_merges:
                self.merges = _merges(tokenizer.get("model", {}).get("merges"))
            if normalizer := tokenizer.get("normalizer"):
                self._parse_normalizer(normalizer)
            added = tokenizer.get("added_tokens", [])
        tc = None
        if (path / "tokenizer_config.json").is_file():
            tc = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        if tokenizer:
            self._post_processor(tokenizer.get("post_processor"), tc)
        if not tc:
            return True
        self._chat_template(path, tc)
        for typ in self.special_token_types:
            if isinstance(flag := tc.get(f"add_{typ}_token"), bool) and typ not in self.add_special_token:
                self.add_special_token[typ] = flag  # the post-processor's word wins
            entry = tc.get(f"{typ}_token")
            content = entry.get("content") if isinstance(entry, dict) else entry
            if isinstance(content, str):
                self._set_special_token(typ, next((a.get("id") for a in added if a.get("content") == content), None))
        return True

    def _post_processor(self, post: dict | None, tc: dict | None) -> None:
        """What BOS / EOS / SEP the tokenizer adds, from its post-processor(s); may name BOS, CLS, SEP, EOT."""
        cfg = tc or {}
        bos, cls, eos, sep = (cfg.get(f"{t}_token") for t in ("bos", "cls", "eos", "sep"))
        if not bos and cls and tc:
            tc["bos_token"] = bos = cls
        if not eos and sep and tc:
            tc["eos_token"] = eos = sep
        for p in (post or {}).get("processors", [post] if post else []):
            kind = p.get("type")
            if kind == "ByteLevel":
                self.add_special_token.setdefault("bos", False)
                self.add_special_token.setdefault("eos", False)
            elif kind == "RobertaProcessing":
                self.add_special_token.update(bos=True, eos=True, sep=True)
                if not cls and tc:
                    tc["cls_token"] = cls = p.get("cls", [bos])[0]
                if not sep and tc:
                    tc["sep_token"] = sep = p.get("sep", [eos])[0]
            elif kind == "TemplateProcessing":
                bos, cls, eos, sep = self._template(p, tc, bos, cls, eos, sep)

    def _template(self, p: dict, tc: dict | None, bos, cls, eos, sep):
        """Crude parsing of a TemplateProcessing, as gguf-py does it (simple templates only)."""
        single, pair = p.get("single", []), p.get("pair", [])
        first = last = None
        if len(single) > 1:
            if first := single[0].get("SpecialToken", {}).get("id"):
                if not tc:
                    bos = first
                elif first not in (bos, cls):
                    if not bos:
                        tc["bos_token"] = bos = first
                    if not cls:
                        tc["cls_token"] = cls = first
                self.add_special_token["bos"] = first in (bos, cls)
            if last := single[-1].get("SpecialToken", {}).get("id"):
                if not tc:
                    eos = last
                elif last != eos:
                    for extra in ("eot", "eom"):
                        if extra not in self.special_token_types:
                            self.special_token_types = (*self.special_token_types, extra)
                            tc[f"{extra}_token"] = eos
                            break
                    tc["eos_token"] = eos = last
                self.add_special_token["eos"] = last == eos
        if pair:
            start = 1 if first and pair[0].get("SpecialToken", {}).get("id") == first else 0
            stop = -1 if last and pair[-1].get("SpecialToken", {}).get("id") == last else None
            pair = pair[start:stop]
            if pair and pair[0].get("Sequence", {}).get("id") == "A" and pair[-1].get("Sequence", {}).get("id") == "B" \
                    and (middle := pair[1:-1]):
                add_sep = False
                if (entry := middle[0].get("SpecialToken", {}).get("id")) and entry in (sep, eos) and not last:
                    add_sep = True
                if len(middle) == 2 and middle[1].get("SpecialToken", {}).get("id") in (sep, eos):
                    add_sep = True
                self.add_special_token["sep"] = add_sep
                if add_sep and not sep and tc:
                    tc["sep_token"] = eos
        return bos, cls, eos, sep

    def _chat_template(self, path: Path, tc: dict) -> None:
        alt = None
        if (path / "chat_template.jinja").is_file():
            alt = (path / "chat_template.jinja").read_text(encoding="utf-8")
            if more := sorted((path / "additional_chat_templates").glob("*.jinja")):
                alt = [{"name": "default", "template": alt},
                       *({"name": f.stem, "template": f.read_text(encoding="utf-8")} for f in more)]
        elif (path / "chat_template.json").is_file():
            alt = json.loads((path / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
        template = tc.get("chat_template", alt)
        if template is None or isinstance(template, (str, list)):
            self.chat_template = template


def _merges(merges) -> list[str]:
    """tokenizer.json merges as "a b" strings (the list-of-pairs form of transformers 4.45+ joined, spaces
    inside a part written as U+0120 + 256 as llama.cpp expects)."""
    if not isinstance(merges, list) or not merges:
        return []
    if isinstance(merges[0], str):
        return merges
    if isinstance(merges[0], list) and len(merges[0]) == 2 and isinstance(merges[0][0], str):
        return [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
                for pair in merges]
    raise ValueError("unknown tokenizer merges format")
