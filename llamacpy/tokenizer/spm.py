"""SentencePiece-style tokenizer (tokenizer.ggml.model = "llama"): llm_tokenizer_spm_session.

Not delegated to `tokenizers`: llama.cpp merges the adjacent pair whose *result* has the highest score (ties to
the leftmost pair) over the whole fragment, with no merges table, and falls back to <0xXX> byte tokens. A BPE
model needs ranked merges per split, and several splits of one piece cannot share a rank there, so overlapping
pairs such as ("ab","a") / ("a","ba") can resolve differently.
"""

from __future__ import annotations

import heapq
import re

from .vocab import Vocab

ESCAPED_SPACE = "\u2581"


class SpmTokenizer:
    """Encodes escaped text (spaces already replaced by U+2581) into token ids, with a per-chunk cache."""

    def __init__(self, vocab: Vocab, cache_size: int = 1 << 16):
        self.vocab = vocab
        self.token_to_id = vocab.token_to_id
        self.scores = vocab.scores.tolist()
        self.cache: dict[str, list[int]] = {}
        self.cache_size = cache_size
        self._chunker = _chunker(vocab.tokens)

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        cache = self.cache
        for chunk in self._chunker(text) if self._chunker else [text]:
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) >= self.cache_size:
                    cache.clear()
                cache[chunk] = ids
            out.extend(ids)
        return out

    def _encode_chunk(self, text: str) -> list[int]:
        token_to_id, scores = self.token_to_id, self.scores
        syms = list(text)
        n = len(syms)
        if n == 0:
            return []
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[float, int, int, int]] = []

        def add(left: int, right: int) -> None:
            piece = syms[left] + syms[right]
            tid = token_to_id.get(piece)
            if tid is not None:
                # highest score first, then leftmost (llm_bigram_spm::comparator)
                heapq.heappush(heap, (-scores[tid], left, right, len(piece)))

        for i in range(n - 1):
            add(i, i + 1)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            a, b = syms[left], syms[right]
            if not a or not b or len(a) + len(b) != size:
                continue  # one side was merged since this pair was queued
            syms[left] = a + b
            syms[right] = ""
            nxt[left] = after = nxt[right]
            if after >= 0:
                prev[after] = left
            if prev[left] >= 0:
                add(prev[left], left)
            if after >= 0:
                add(left, after)

        out: list[int] = []
        i = 0
        while i != -1:
            tid = token_to_id.get(syms[i])
            if tid is not None:
                out.append(tid)
            else:  # an unknown single character: its UTF-8 bytes as byte tokens
                out.extend(t for t in map(self.vocab.byte_token, syms[i].encode()) if t is not None)
            i = nxt[i]
        return out


def _chunker(tokens: list[str]):
    """A splitter before each U+2581 that no merge can cross, or None.

    A merge across a boundary would make a token containing the two characters either side of it. Boundaries
    "x▁" where no token contains "x▁" are safe, so the fragment splits into independently merged, cacheable
    chunks with identical results.
    """
    joined = "\0".join(tokens)
    before = set(re.findall(f"(.){ESCAPED_SPACE}", joined, re.DOTALL)) | {ESCAPED_SPACE}
    cls = "".join(re.escape(c) for c in sorted(before))
    pattern = re.compile(f"(?<=[^{cls}])(?={ESCAPED_SPACE})")
    return pattern.split
