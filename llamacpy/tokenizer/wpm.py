"""WordPiece (tokenizer.ggml.model = "bert"): llm_tokenizer_wpm_session.

The GGUF stores word-initial pieces with a U+2581 prefix and continuation pieces bare, so each word is
prefixed with U+2581 and matched greedily, longest piece first.
"""

from __future__ import annotations

from . import unicode as uc
from .vocab import Vocab


def _is_chinese(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WpmTokenizer:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.max_len = vocab.max_token_len
        self.lower = uc.lowercase_map() if vocab.lowercase else {}
        self.nfd = uc.nfd_first_map() if vocab.strip_accents else {}

    def words(self, text: str) -> list[str]:
        """Normalize and split on whitespace; punctuation, ASCII symbols and CJK become single-char words."""
        words = [""]
        strip_accents = self.vocab.strip_accents
        for ch in text:
            cp = self.nfd.get(ord(ch), ord(ch))
            flags = uc.cpt_flags(cp)
            if flags & uc.WHITESPACE:
                if words[-1]:
                    words.append("")
                continue
            if cp == 0 or cp == 0xFFFD or flags & uc.CONTROL:
                continue
            if strip_accents and flags & uc.ACCENT_MARK:
                continue
            s = chr(self.lower.get(cp, cp))
            if flags & uc.PUNCTUATION or (cp < 0x7F and flags & uc.SYMBOL) or _is_chinese(cp):
                if words[-1]:
                    words.append("")
                words[-1] = s
                words.append("")
            else:
                words[-1] += s
        if not words[-1]:
            words.pop()
        return words

    def encode(self, text: str) -> list[int]:
        token_to_id = self.vocab.token_to_id
        out: list[int] = []
        for word in self.words(text):
            if not word:
                continue
            # lengths are in bytes in llama.cpp; slice the UTF-8 so partial characters can match the same way
            w = ("\u2581" + word).encode()
            n = len(w)
            start = len(out)
            i = 0
            while i < n:
                for j in range(min(n, i + self.max_len + 1), i, -1):
                    tid = token_to_id.get(w[i:j].decode("utf-8", "surrogateescape"))
                    if tid is not None:
                        out.append(tid)
                        i = j
                        break
                else:
                    del out[start:]
                    break
            if len(out) == start:
                out.append(self.vocab.ids["unk"])
        return out
