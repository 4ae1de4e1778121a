"""One sequence in a KV cache row: feeding tokens, reusing the cached common prefix."""

from __future__ import annotations

import time

import numpy as np

from ..models import DecoderModel, KVCache, Segment
from .thread_tuner import ThreadTuner


def common_prefix(a: list[int], b: list[int]) -> int:
    """The length of the longest common prefix, compared in blocks at C speed (a drafter calls this every few
    tokens on the whole context)."""
    n = min(len(a), len(b))
    for start in range(0, n, 256):
        end = min(n, start + 256)
        if a[start:end] != b[start:end]:
            return next(i for i in range(start, end) if a[i] != b[i])
    return n

class Sequence:
    """Tracks which tokens sit in cache row `seq`, so a new prompt only processes what differs."""

    def __init__(self, model: DecoderModel, cache: KVCache, seq: int = 0, n_batch: int = 512,
                 tuner: ThreadTuner | None = None):
        self.model, self.cache, self.seq, self.n_batch = model, cache, seq, n_batch
        self.tuner = tuner  # picks the kernel threads of each single-token step (thread_tuner.py)
        self.tokens: list[int] = []

    @property
    def n_ctx(self) -> int:
        return self.cache.n_ctx

    def common_prefix(self, tokens: list[int]) -> int:
        return common_prefix(self.tokens, tokens)

    def reset(self, keep: int = 0) -> None:
        del self.tokens[keep:]

    def shift(self, keep: int, discard: int) -> None:
        """Drop tokens [keep, keep + discard) from the cache row, the later ones moved down (context shift)."""
        n = len(self.tokens)
        if n <= keep + discard:
            self.reset(min(n, keep))
            return
        self.model.move_cells(self.cache, self.seq, keep + discard, keep, n - keep - discard)
        del self.tokens[keep:keep + discard]

    def reuse_chunks(self, prompt: list[int], n_past: int, min_chunk: int) -> int:
        """llama-server's --cache-reuse: past the common prefix (n_past tokens), every run of at least min_chunk
        cached tokens that continues the prompt where it stands is moved into place (its keys re-rotated) instead
        of being evaluated again; the cached tokens after the last reused run are dropped. Returns how many of
        the prompt's tokens the row now holds (server-context.cpp's loop, run for run)."""
        cached = self.tokens
        head_c = head_p = n_past
        while head_c < len(cached) and head_p < len(prompt):
            m = 0
            while head_c + m < len(cached) and head_p + m < len(prompt) and cached[head_c + m] == prompt[head_p + m]:
                m += 1
            if m >= min_chunk:
                if head_c != head_p:
                    self.model.move_cells(self.cache, self.seq, head_c, head_p, m)
                cached[head_p:head_p + m] = cached[head_c:head_c + m]
                head_c += m
                head_p += m
            else:
                head_c += 1
        self.reset(head_p)
        return head_p

    def feed(self, tokens: list[int], all_logits: bool = False, row_exact: bool = False) -> np.ndarray:
        """Append tokens to the sequence; return logits of the last token (or of every token).

        Long inputs are processed in batches of n_batch tokens. `row_exact`: each token's logits are
        those a one-token feed gives (`DecoderModel.forward`), for checking a draft.
        """
        if not tokens:
            raise ValueError("feed() needs at least one token")
        if len(self.tokens) + len(tokens) > self.n_ctx:
            raise ValueError(f"context full: {len(self.tokens)} + {len(tokens)} tokens > n_ctx {self.n_ctx}")
        outs = []
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            seg = Segment(self.seq, len(self.tokens), len(chunk))
            rows = np.arange(len(chunk)) if all_logits else None
            if self.tuner is not None and len(chunk) == 1:
                self.tuner.threads_for_next_step()
                t0 = time.perf_counter()
                logits = self.model.forward(np.asarray(chunk), [seg], self.cache, rows)
                self.tuner.record(time.perf_counter() - t0, 1, decode_only=True)
            else:
                logits = self.model.forward(np.asarray(chunk), [seg], self.cache, rows, row_exact=row_exact)
            self.tokens.extend(chunk)
            outs.append(logits)
        return np.concatenate(outs) if all_logits else outs[-1][-1]

    def prefill(self, prompt: list[int]) -> np.ndarray:
        """Make the sequence equal `prompt`, reusing the cached common prefix; logits of its last token."""
        keep = min(self.common_prefix(prompt), len(prompt) - 1)  # at least one token to get logits
        self.reset(keep)
        return self.feed(prompt[keep:])
