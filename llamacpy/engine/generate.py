"""Token generation for one sequence: prompt, then sample until end-of-generation or the budget."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..sampling import Sampler
from .sequence import Sequence


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
             eog_ids: set[int]) -> Iterator[Step]:
    """Yield each sampled token; the last Step carries `stop`. An end-of-generation token is yielded
    (with stop=EOS) but not fed back into the cache."""
    for t in prompt:
        sampler.accept(t)
    logits = seq.prefill(prompt)
    n = 0
    while True:
        token = sampler.sample(logits)
        n += 1
        if token in eog_ids and not params.ignore_eos:
            yield Step(token, logits, StopReason.EOS)
            return
        if sampler.constraint_done:
            yield Step(token, logits, StopReason.GRAMMAR)
            return
        if params.n_predict >= 0 and n >= params.n_predict:
            yield Step(token, logits, StopReason.LENGTH)
            return
        if len(seq.tokens) + 1 >= seq.n_ctx:
            yield Step(token, logits, StopReason.CONTEXT)
            return
        yield Step(token, logits)
        logits = seq.feed([token])
