"""Token generation for one sequence: prompt, then sample until end-of-generation or the budget."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..kernels.weight import VEC_DOT_BATCH
from ..sampling import Sampler
from .sequence import Sequence
from .speculative import Drafter, DraftStats


class StopReason(str, enum.Enum):
    EOS = "eos"          # an end-of-generation token
    LENGTH = "length"    # n_predict reached
    CONTEXT = "context"  # the context is full
    GRAMMAR = "grammar"  # the sampler's constraint is complete (the token is part of the output)


@dataclass
class GenerationParams:
    n_predict: int = -1  # -1 = until end-of-generation or a full context
    ignore_eos: bool = False


@dataclass
class Step:
    token: int
    logits: np.ndarray  # the logits the token was sampled from
    stop: StopReason | None = None


def generate(seq: Sequence, prompt: list[int], sampler: Sampler, params: GenerationParams,
             eog_ids: set[int], drafter: Drafter | None = None, stats: DraftStats | None = None) -> Iterator[Step]:
    """Yield each sampled token; the last Step carries `stop`. An end-of-generation token is yielded
    (with stop=EOS) but not fed back into the cache.

    With a `drafter`, each round evaluates the last token and a draft in one forward and samples the
    positions in order while the draft holds (speculative.py): the same tokens, fewer forwards; `stats`
    counts drafted and accepted tokens."""
    for t in prompt:
        sampler.accept(t)
    rows = seq.prefill(prompt)[None]  # (R, n_vocab): logits to sample from, one row per position in order
    draft: list[int] = []
    n = 0
    while True:
        n_before = len(seq.tokens) - len(rows)  # cached tokens before the chunk that gave `rows`
        for i, logits in enumerate(rows):
            token = sampler.sample(logits)
            n += 1
            stop = _stop_reason(token, sampler, params, eog_ids, n, n_before + i + 1, seq.n_ctx)
            accepted = i < len(draft) and token == draft[i]
            if stats is not None:
                stats.n_accepted += accepted
            yield Step(token, logits, stop)
            if stop is not None:
                return
            if not accepted:
                break
        if draft:
            seq.reset(n_before + i + 1)  # drop the rejected draft tokens
        draft = drafter.draft(seq.tokens + [token], _draft_budget(seq, params, n)) if drafter else []
        if not draft:
            rows = seq.feed([token])[None]
            continue
        if stats is not None:
            stats.n_drafted += len(draft)
        rows = seq.feed([token, *draft], all_logits=True, row_exact=True)  # (1 + len(draft), n_vocab)


def _stop_reason(token: int, sampler: Sampler, params: GenerationParams, eog_ids: set[int], n: int,
                 n_cached: int, n_ctx: int) -> StopReason | None:
    """Whether the n-th sampled token, drawn after `n_cached` cached tokens, ends the generation."""
    if token in eog_ids and not params.ignore_eos:
        return StopReason.EOS
    if sampler.constraint_done:
        return StopReason.GRAMMAR
    if params.n_predict >= 0 and n >= params.n_predict:
        return StopReason.LENGTH
    if n_cached + 1 >= n_ctx:
        return StopReason.CONTEXT
    return None


def _draft_budget(seq: Sequence, params: GenerationParams, n: int) -> int:
    """Most draft tokens worth checking after the n-th token: a round of k yields up to k + 1 tokens,
    within n_predict and before the context stop, checked in one fused step (row-exact up to its size)."""
    budget = min(seq.n_ctx - len(seq.tokens) - 2, VEC_DOT_BATCH - 1)
    if params.n_predict >= 0:
        budget = min(budget, params.n_predict - n - 1)
    return budget
