"""DRY ("don't repeat yourself"): penalize tokens that would extend a repetition of the recent context.

A port of llama.cpp's sampler (itself from koboldcpp, PR 982 by pi6am): sequence breakers are strings
that end a repetition; each is turned into token sequences once per vocabulary (`breaker_sequences`),
then every step runs the reverse Z-algorithm over the last `penalty_last_n` tokens.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np

from .samplers import Candidates

MAX_CHAR_LEN = 40  # llama.cpp truncates a breaker to 40 bytes and its token tail to 20 tokens
MAX_SEQ_LEN = 20
FLOAT_MAX_LOG = 88.7228391

Breakers = dict[int, tuple[tuple[int, ...], ...]]  # head token -> the token tails that complete a breaker


def breaker_sequences(tokenizer, breakers: tuple[str, ...]) -> Breakers:
    """Every token that contains a breaker (empty tail), or ends with a breaker's prefix (the tail is the
    rest of the breaker, tokenized), as llama.cpp's get_overlapping_token_sequences."""
    return _breaker_sequences(tokenizer, tuple(breakers))


@lru_cache(maxsize=16)
def _pieces(tokenizer) -> tuple[bytes, ...]:
    return tuple(tokenizer.token_to_piece(t, special=True) for t in range(tokenizer.n_vocab))


@lru_cache(maxsize=64)
def _breaker_sequences(tokenizer, breakers: tuple[str, ...]) -> Breakers:
    out: dict[int, list[tuple[int, ...]]] = {}
    pieces = _pieces(tokenizer)
    for text in breakers:
        s = text.encode()[:MAX_CHAR_LEN]
        if not s:
            continue
        for token, word in enumerate(pieces):
            if s in word:
                _add(out, token, ())
                continue
            pos = word.find(s[:1])
            while pos >= 0:
                n = len(word) - pos  # the word ends with s[:n]: the rest of s continues in later tokens
                if n < len(s) and s[:n] == word[pos:]:
                    rest = s[n:].decode(errors="ignore")
                    tail = tuple(tokenizer.encode(rest, add_special=False, parse_special=False)[:MAX_SEQ_LEN])
                    _add(out, token, tail)
                pos = word.find(s[:1], pos + 1)
    return {k: tuple(v) for k, v in out.items()}


def _add(out: dict, token: int, tail: tuple[int, ...]) -> None:
    tails = out.setdefault(token, [])
    if tail not in tails:
        tails.append(tail)


class Dry:
    def __init__(self, multiplier: float, base: float, allowed_length: int, penalty_last_n: int,
                 breakers: Breakers):
        self.multiplier, self.base = np.float32(multiplier), np.float32(base)
        self.allowed, self.last_n = allowed_length, max(penalty_last_n, 0)
        self.breakers = breakers
        self.tokens: deque[int] = deque(maxlen=self.last_n)
        self.max_exponent = int(FLOAT_MAX_LOG / np.log(base)) if base > 1.000001 else 0

    @staticmethod
    def enabled(multiplier: float, base: float, penalty_last_n: int) -> bool:
        return multiplier != 0.0 and base >= 1.0 and penalty_last_n > 0

    def accept(self, token: int) -> None:
        self.tokens.append(int(token))

    def apply(self, c: Candidates) -> None:
        n = min(len(self.tokens), self.last_n)
        if n <= self.allowed:
            return
        rat = list(self.tokens)[::-1][:n]  # rat[i]: the i-th token from the end
        rep_limit = n
        for i, token in enumerate(rat):  # the latest breaker limits how far back a repetition may reach
            longest = -1
            for tail in self.breakers.get(token, ()):
                if longest < len(tail) <= i and all(tail[o] == rat[i - o - 1] for o in range(len(tail))):
                    longest = len(tail)
            if longest >= 0:
                rep_limit = i - longest
                break
        if rep_limit < self.allowed:
            return
        count = _repeat_counts(rat, rep_limit)
        best: dict[int, int] = {}
        for i in range(n - 1):
            length = count[i]
            if length >= self.allowed:
                token = rat[n - 2 - i]  # the token after this repeat's earlier occurrence
                if best.get(token, -1) < length:
                    best[token] = length
        if not best:
            return
        ids = np.fromiter(best, dtype=np.int64, count=len(best))
        pos, which = c.positions(ids)
        for p, w in zip(pos, which, strict=True):
            token = int(ids[w])
            if () in self.breakers.get(token, ()):  # a single-token breaker is never penalized
                continue
            exp = best[token] - self.allowed
            if self.max_exponent > 0 and exp > self.max_exponent:
                exp = self.max_exponent
            c.logits[p] -= np.float32(float(self.multiplier) * float(self.base) ** exp)
        c.sorted = False


def _repeat_counts(rat: list[int], rep_limit: int) -> list[int]:
    """llama.cpp's reverse Z-algorithm: count[last - k] = how many tokens before position k (from the end)
    repeat the context's last tokens, capped at rep_limit."""
    n = len(rat)
    last = n - 1
    count = [0] * n
    lt = rt = 0
    for k in range(1, n):
        if k > rt:
            m = 0
            while m + k < n and rat[m] == rat[m + k]:
                m += 1
            count[last - k] = min(m, rep_limit)
            if m > 0:
                lt, rt = k, k + m - 1
        else:
            p = k - lt
            right = rt - k + 1
            if count[last - p] < right:
                count[last - k] = min(count[last - p], rep_limit)
            else:
                i = rt + 1
                while i < n and rat[i] == rat[i - k]:
                    i += 1
                count[last - k] = min(i - k, rep_limit)
                lt, rt = k, i - 1
    return count
