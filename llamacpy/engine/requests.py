"""What crosses between the HTTP layer and the engine thread: requests in, events out. Token ids only.

A request's events arrive through its `sink`, called on the engine thread (it must not block): zero or
more `TokenEvent`s, then exactly one `DoneEvent`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..sampling import SamplingParams

if TYPE_CHECKING:
    from ..sampling.grammar import Grammar
    from .speculative import DraftParams


class EndReason(str, enum.Enum):
    EOS = "eos"              # an end-of-generation token was sampled
    LENGTH = "length"        # n_predict tokens were generated
    CONTEXT = "context"      # the slot's context is full
    CANCELLED = "cancelled"  # the requester cancelled it (stop string found, client gone)
    SHUTDOWN = "shutdown"    # the engine is stopping
    ERROR = "error"          # the request could not be run (see DoneEvent.message)


@dataclass
class GenRequest:
    """One generation: a prompt of token ids and how to continue it."""

    prompt: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n_predict: int = -1          # -1: until end-of-generation or a full context; 0: evaluate the prompt only
    ignore_eos: bool = False
    logprobs: bool = False       # report each sampled token's log-probability (from the raw logits)
    n_probs: int = 0             # ... and the n most likely alternatives
    post_sampling_probs: bool = False  # ... as probabilities after the sampler chain (llama-server's option)
    cache_prompt: bool = True    # reuse the longest common prefix cached in the chosen slot
    id_slot: int = -1            # -1: any slot
    grammar: Grammar | None = None  # constrain the output (a matcher is started on the engine thread)
    draft: DraftParams | None = None  # speculative decoding's limits for this request (None: the server's)
    sink: Callable[[TokenEvent | ProgressEvent | DoneEvent], None] = field(default=lambda ev: None, repr=False)
    return_progress: bool = False  # ProgressEvents while the prompt is evaluated (llama-server's option)
    n_keep: int = 0              # context shift: prompt tokens kept at the front (-1: all; BOS is kept besides)
    n_discard: int = 0           # context shift: tokens dropped after them (0: half of the rest)
    n_cache_reuse: int = 0       # --cache-reuse: cached runs of at least this many prompt tokens are moved, not
                                 # evaluated again (0: only the common prefix is reused)
    lora: tuple[float, ...] | None = None  # the LoRA adapters' scales for this request (None: the server's)
    id: int = -1                 # assigned by Engine.submit


@dataclass(slots=True)
class Stats:
    """Counters of one request so far (times in milliseconds, as llama-server reports them)."""

    id_slot: int = -1
    n_prompt: int = 0      # prompt tokens
    n_cached: int = 0      # of which reused from the slot's cache (not evaluated)
    n_decoded: int = 0     # tokens sampled so far
    t_prompt_ms: float = 0.0  # prompt evaluation, up to the first sampled token
    t_gen_ms: float = 0.0     # from the first sampled token to the latest
    n_drafted: int = 0        # speculative decoding: tokens drafted ...
    n_draft_accepted: int = 0  # ... and accepted (sampled as drafted)
    truncated: bool = False    # the context was shifted (tokens dropped) at least once


@dataclass(slots=True)
class TokenEvent:
    token: int
    stats: Stats
    logprob: float | None = None                   # when the request asked for logprobs (post_sampling_probs: prob)
    top: list[tuple[int, float]] | None = None     # (id, logprob or prob) of the n_probs best, best first


@dataclass(slots=True)
class ProgressEvent:
    """Prompt evaluation so far: sent when the request gets its slot (processed == cache), then after each prompt
    batch (the last with processed == total). `stats` as of then (n_prompt = processed), for timings."""

    total: int
    cache: int
    processed: int
    time_ms: int
    stats: Stats


@dataclass(slots=True)
class DoneEvent:
    reason: EndReason
    stats: Stats
    message: str = ""  # for ERROR / SHUTDOWN


Event = TokenEvent | ProgressEvent | DoneEvent
