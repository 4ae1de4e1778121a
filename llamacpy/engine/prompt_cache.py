"""llama-server's RAM prompt cache (`--cache-ram`, server_prompt_cache): slots' cached prompts copied out of the KV
cache before they are overwritten, and copied back into a slot when a later prompt shares more with one of them
than with what the slot holds, so a conversation that lost its slot is not evaluated again.

As llama-server: a saved prompt that another saved prompt contains is dropped; the oldest go first when the size
limit is reached; a cached prompt is taken only if it keeps at least a quarter of itself and beats the slot's own
prefix on both the share of itself kept (f_keep) and the share of the new prompt covered (f_sim); it leaves the
cache when taken. Each entry keeps the LoRA scales its K/V were computed with (only a request with the same ones
takes it) and the logits after its last token (a request for exactly that prompt samples from them, as from a
slot's own). Runs on the engine thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..models import KVCache
from .sequence import common_prefix

log = logging.getLogger("llamacpy")
MIN_KEEP = 0.25  # llama-server: "don't trash large prompts"


@dataclass
class CachedPrompt:
    tokens: list[int]
    k: list[np.ndarray]  # per layer (n_head_kv, n, row): the slot's cells as the cache holds them
    v: list[np.ndarray]
    lora: tuple[float, ...]
    logits: tuple[int, np.ndarray] | None  # the slot's prompt_logits, when they were of these tokens

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)


class PromptCache:
    def __init__(self, limit_bytes: int):
        """`limit_bytes` 0: no limit (--cache-ram -1)."""
        self.limit = limit_bytes
        self.states: list[CachedPrompt] = []  # oldest first

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.states)

    def save(self, cache: KVCache, seq: int, tokens: list[int], lora: tuple, logits) -> bool:
        """Copy row `seq`'s cells of `tokens` into the cache (False: nothing to save, already held, or too big)."""
        n = len(tokens)
        if n == 0:
            return False
        if any(s.lora == lora and common_prefix(s.tokens, tokens) == n for s in self.states):
            return False  # the prompt is already in the cache
        per_token = sum(a[seq].nbytes for a in cache.k + cache.v) // cache.n_ctx
        size = per_token * n
        if self.limit and size > self.limit:
            log.warning("prompt cache: a prompt of %d tokens (%.1f MiB) exceeds --cache-ram, not saved", n,
                        size / 2**20)
            return False
        self.states = [s for s in self.states  # cached prompts the new one contains are obsolete
                       if not (s.lora == lora and common_prefix(s.tokens, tokens) == len(s.tokens))]
        while self.states and self.limit and self.nbytes + size > self.limit:
            dropped = self.states.pop(0)
            log.info("prompt cache: making room, dropping a prompt of %d tokens", len(dropped.tokens))
        kept = logits if logits is not None and logits[0] == n else None
        self.states.append(CachedPrompt(list(tokens), [np.array(a[seq][:, :n]) for a in cache.k],
                                        [np.array(a[seq][:, :n]) for a in cache.v], lora, kept))
        log.debug("prompt cache: saved %d tokens; %d prompts, %.1f MiB", n, len(self.states), self.nbytes / 2**20)
        return True

    def best(self, held: list[int], tokens: list[int], lora: tuple) -> CachedPrompt | None:
        """The cached prompt to take for `tokens` over the slot's own `held` ones (server_prompt_cache::load)."""
        lcp = common_prefix(held, tokens)
        f_keep = lcp / len(held) if held else -1.0
        f_sim = lcp / len(tokens) if tokens else 0.0
        best = None
        for s in self.states:
            if s.lora != lora:
                continue
            n = common_prefix(s.tokens, tokens)
            keep, sim = n / len(s.tokens), n / max(len(tokens), 1)
            if keep >= MIN_KEEP and f_keep < keep and f_sim < sim:
                best, f_keep, f_sim = s, keep, sim
        return best

    def take(self, state: CachedPrompt, cache: KVCache, seq: int) -> None:
        """Copy `state` into row `seq` and drop it from the cache."""
        n = len(state.tokens)
        for layer, (k, v) in enumerate(zip(state.k, state.v)):
            cache.k[layer][seq][:, :n] = k
            cache.v[layer][seq][:, :n] = v
        self.states.remove(state)
        log.debug("prompt cache: restored %d tokens; %d prompts left", n, len(self.states))
