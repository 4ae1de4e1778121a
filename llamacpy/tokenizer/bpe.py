"""Byte-level BPE (tokenizer.ggml.model = "gpt2", and "gemma4"): llm_tokenizer_bpe_session.

The merge loop is our own rather than `tokenizers.models.BPE`: measured on Qwen2.5's 151k vocabulary, the
library gave identical ids but took 0.66 s to build (vs 0.1 s for a rank dict) and was no faster on a 35 KB
text (32 ms for the merges alone vs 40 ms for our whole encode, 3-8 ms once the word cache is warm). Its
pre-tokenizer cannot be used either: llama.cpp's splits differ from Unicode-correct regexes (pretokenize.py).
"""

from __future__ import annotations

import heapq

from . import unicode as uc
from .pretokenize import RAW_UTF8_TYPES, splitter_for
from .vocab import Vocab


class BpeTokenizer:
    """Pre-tokenizes with the vocabulary's regexes, then merges each word by rank, with a per-word cache."""

    def __init__(self, vocab: Vocab, merges: list[str], cache_size: int = 1 << 16):
        self.vocab = vocab
        self.token_to_id = vocab.token_to_id
        regex_type = vocab.pre_settings.regex_type if vocab.pre_settings else "default"
        self.splitter = splitter_for(regex_type)
        self.byte_encode = regex_type not in RAW_UTF8_TYPES
        self.gemma4 = regex_type == "gemma4"
        # "left right" -> rank; the first occurrence of a pair wins (std::unordered_map::emplace). Tokens
        # never contain a raw space, so the joined string identifies the pair.
        self.ranks: dict[str, int] = dict(zip(reversed(merges), range(len(merges) - 1, -1, -1)))
        self.cache: dict[str, list[int]] = {}
        self.cache_size = cache_size

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        cache = self.cache
        for word in self.splitter.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._encode_word(word)
                if len(cache) >= self.cache_size:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)
        return out

    def _encode_word(self, word: str) -> list[int]:
        token_to_id = self.token_to_id
        text = uc.byte_encode(word) if self.byte_encode else word
        tid = token_to_id.get(text)
        if tid is not None and (self.vocab.ignore_merges or (self.gemma4 and not text.strip("\n"))):
            return [tid]
        return [t for sym in self._merge(text) for t in self._symbol_ids(sym)]

    def _merge(self, text: str) -> list[str]:
        syms = list(text)
        n = len(syms)
        if n < 2:
            return syms
        ranks = self.ranks
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[int, int, int, str]] = []

        def add(left: int, right: int) -> None:
            a, b = syms[left], syms[right]
            rank = ranks.get(a + " " + b)
            if rank is not None:
                # lowest rank first, then leftmost (llm_bigram_bpe::comparator)
                heapq.heappush(heap, (rank, left, right, a + b))

        for i in range(n - 1):
            add(i, i + 1)
        while heap:
            _, left, right, merged = heapq.heappop(heap)
            a, b = syms[left], syms[right]
            if not a or not b or a + b != merged:
                continue  # outdated pair
            syms[left] = merged
            syms[right] = ""
            nxt[left] = after = nxt[right]
            if after >= 0:
                prev[after] = left
            if prev[left] >= 0:
                add(prev[left], left)
            if after >= 0:
                add(left, after)
        return [s for s in syms if s]

    def _symbol_ids(self, sym: str) -> list[int]:
        tid = self.token_to_id.get(sym)
        if tid is not None:
            return [tid]
        # not in the vocabulary: llama.cpp looks each byte up on its own
        if self.byte_encode:
            found = (self.token_to_id.get(chr(b)) if b < 0x80 else None for b in sym.encode())
        else:
            found = (self.token_to_id.get(f"<0x{b:02X}>") for b in sym.encode())
        return [t for t in found if t is not None]
