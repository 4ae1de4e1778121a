"""Unigram (tokenizer.ggml.model = "t5", also XLM-R style embedders): llm_tokenizer_ugm_session.

The text is normalized with SentencePiece's precompiled charsmap (a XOR-compressed double array, walked as
llama.cpp does), then the best-scoring segmentation is found by Viterbi over UTF-8 bytes.
"""

from __future__ import annotations

import bisect

import numpy as np

from .vocab import Attr, Vocab

_SPACE = b"\xe2\x96\x81"


def _utf8_len(lead: int) -> int:
    return (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[lead >> 4]


class _Charsmap:
    """The precompiled charsmap: longest input prefix with a replacement, via the XCDA."""

    def __init__(self, blob: bytes):
        size = int.from_bytes(blob[:4], "little")
        if size + 4 >= len(blob):
            raise ValueError("precompiled charsmap too small")
        self.nodes = np.frombuffer(blob[4:4 + size], dtype="<u4").tolist()
        self.replacements = blob[4 + size:]

    def _node(self, i: int) -> int:
        if i >= len(self.nodes):
            raise ValueError("index out of array bounds in XCDA array")
        return self.nodes[i]

    def _base(self, i: int) -> int:
        node = self._node(i)
        return (node >> 10) << ((node & (1 << 9)) >> 6)

    def match(self, data: bytes, start: int) -> tuple[bytes, int] | None:
        """(replacement, consumed length) for the longest prefix of data[start:] with a replacement."""
        best_len = best_off = 0
        index = self._base(0)
        for pos in range(start, len(data)):
            c = data[pos]
            if c == 0:
                break
            index ^= c
            node = self._node(index)
            if node & ((1 << 31) | 0xFF) != c:
                break
            leaf = (node >> 8) & 1
            index ^= self._base(index)
            if leaf:
                best_len = pos - start + 1
                best_off = self._node(index) & ((1 << 31) - 1)
        if not best_len:
            return None
        end = self.replacements.find(b"\0", best_off)
        if best_off >= len(self.replacements) or end < 0:
            raise ValueError("bad replacement in precompiled charsmap")
        return self.replacements[best_off:end], best_len


class UgmTokenizer:
    def __init__(self, vocab: Vocab, charsmap: bytes | None):
        self.vocab = vocab
        self.charsmap = _Charsmap(charsmap) if charsmap else None
        attrs = vocab.attrs
        normal = (attrs & int(Attr.NORMAL)) != 0
        user = (attrs & int(Attr.USER_DEFINED)) != 0
        matchable = np.nonzero(normal | user | ((attrs & int(Attr.UNUSED)) != 0))[0].tolist()
        self.pieces: dict[bytes, int] = {vocab.tokens[i].encode(): i for i in matchable}
        # sorted, so "is this a prefix of some piece" (where llama.cpp's trie walk stops) is one bisection
        self.sorted_pieces = sorted(self.pieces)
        self.user_prefixes = {vocab.tokens[i].encode()[:k] for i in np.nonzero(user)[0].tolist()
                              for k in range(1, len(vocab.tokens[i].encode()) + 1)}
        self.scores = vocab.scores.astype(np.float64).tolist()
        self.user = set(np.nonzero(user)[0].tolist())
        min_score = np.float32(vocab.scores[normal].min()) if normal.any() else np.float32(np.finfo(np.float32).max)
        self.unknown_score = float(min_score - np.float32(10.0))

    def _is_prefix(self, data: bytes) -> bool:
        i = bisect.bisect_left(self.sorted_pieces, data)
        return i < len(self.sorted_pieces) and self.sorted_pieces[i].startswith(data)

    def _normalize_prefix(self, data: bytes, start: int) -> tuple[bytes, int]:
        n = 0  # user-defined pieces pass through untouched (longest prefix on their trie path)
        while start + n < len(data) and data[start:start + n + 1] in self.user_prefixes:
            n += 1
        if n:
            return data[start:start + n], n
        if self.charsmap is not None:
            hit = self.charsmap.match(data, start)
            if hit is not None:
                return hit
        n = _utf8_len(data[start])
        return data[start:start + n], n

    def normalize(self, text: str) -> bytes:
        v = self.vocab
        space = _SPACE if v.escape_whitespaces else b" "
        prepend, merge = v.add_space_prefix, v.remove_extra_whitespaces
        data = text.encode()
        out = bytearray()
        prepended = in_word = False
        pos = 0
        while pos < len(data):
            piece, used = self._normalize_prefix(data, pos)
            for c in piece:
                if c != 0x20:
                    if not in_word:
                        in_word = True
                        if (prepend and not prepended) or merge:
                            out += space
                            prepended = True
                    out.append(c)
                else:
                    in_word = False
                    if not merge:
                        out += space
            pos += used
        return bytes(out)

    def encode(self, text: str) -> list[int]:
        data = self.normalize(text)
        n = len(data)
        if n == 0:
            return []
        unk = self.vocab.ids["unk"]
        pieces, scores, user, is_prefix = self.pieces, self.scores, self.user, self._is_prefix
        best_tok = [unk] * (n + 1)
        best_from = [0] * (n + 1)
        best_score = [-float("inf")] * (n + 1)
        best_score[0] = 0.0
        pos = 0
        while pos < n:
            width = min(_utf8_len(data[pos]), n - pos)
            here = best_score[pos]
            whole_char = False
            end = pos + 1
            while end <= n and is_prefix(data[pos:end]):
                tid = pieces.get(data[pos:end])
                if tid is not None:
                    whole_char |= end - pos == width
                    score = here + (0.0 if tid in user else scores[tid])
                    if score > best_score[end]:
                        best_tok[end], best_from[end], best_score[end] = tid, pos, score
                end += 1
            if not whole_char:
                score = here + self.unknown_score
                if score > best_score[pos + width]:
                    best_tok[pos + width], best_from[pos + width], best_score[pos + width] = unk, pos, score
            pos += width
        out: list[int] = []
        at, prev_unknown = n, False
        while True:  # backtrack; runs of unknown pieces collapse into one
            is_unknown = best_tok[at] == unk
            if not (prev_unknown and is_unknown):
                out.append(best_tok[at])
            if best_from[at] == 0:
                break
            prev_unknown = is_unknown
            at = best_from[at]
        return out[::-1]
