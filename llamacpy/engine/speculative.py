"""Speculative decoding: a drafter proposes the next tokens, the target checks them in one forward.

Each round (`generate.generate` with a drafter): the drafter continues the context with up to n_max tokens;
the target evaluates [last sampled token] + draft as one chunk with logits at every position; then the
target's own sampler samples position by position, and the draft is accepted while the sampled token
equals the drafted one (llama.cpp's method, at every temperature). The first sample that differs, or the
one after a fully accepted draft, is the next token; the cached positions of the rejected tokens are
dropped (the cache rows are overwritten by the next chunk).

The sampler chain (penalties, grammar, seeded draw) stays the only source of tokens and draws once per
token, as without a draft; a chunk of <= 64 rows gives every row the logits a one-row step gives (the fused
step, `models/llama_step.py`, is row-independent bit for bit), so greedy and seeded outputs are the same
token for token with and without a draft. The draft only changes the speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numba import njit

from ..gguf import GGMLType
from ..kernels.threads import SETTINGS, set_active_threads
from ..models import DecoderModel
from .sequence import Sequence
from .thread_tuner import ThreadTuner

# vocabularies may differ in size by this many (padding) tokens, as llama.cpp's SPEC_VOCAB_MAX_SIZE_DIFFERENCE
VOCAB_SIZE_SLACK = 128


@dataclass
class DraftParams:
    """llama.cpp's --draft-max, --draft-min, --draft-p-min."""

    n_max: int = 16      # most tokens drafted per round
    n_min: int = 0       # a shorter draft is dropped (the round decodes one token)
    p_min: float = 0.75  # drafting stops at a token whose probability under the draft model is below this

    def validate(self) -> None:
        if self.n_max < 0 or self.n_min < 0:
            raise ValueError(f"draft-max ({self.n_max}) and draft-min ({self.n_min}) must be >= 0")
        if not 0.0 <= self.p_min <= 1.0:
            raise ValueError(f"draft-p-min must be in [0, 1], not {self.p_min}")


@dataclass
class DraftStats:
    """Drafted and accepted tokens (llama.cpp's n_drafted / n_accept)."""

    n_drafted: int = 0
    n_accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.n_accepted / self.n_drafted if self.n_drafted else 0.0

    def summary(self) -> str:
        return (f"draft: {self.n_drafted} tokens drafted, {self.n_accepted} accepted "
                f"(acceptance {100 * self.acceptance:.1f}%)")


@dataclass
class DraftSetup:
    """A draft model for the server's slots (llama-server's -md): each slot drafts in a cache of its own."""

    model: DecoderModel
    params: DraftParams
    n_ctx_slot: int                # each slot's draft context (-cd split among the slots, else the slot's)
    n_threads: int | None = None   # -td; None: as the target (tuned when the target's threads are)
    cache_types: tuple[GGMLType, GGMLType] = (GGMLType.F16, GGMLType.F16)  # -ctkd, -ctvd


class Drafter(Protocol):
    def draft(self, context: list[int], n_max: int) -> list[int]:
        """At most n_max tokens likely to follow `context` (the whole sequence so far); [] for none."""
        ...


@njit(cache=True, nogil=True, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})  # not ninf: -inf logits
def top_token(logits: np.ndarray) -> tuple[int, float]:
    """The most likely token (the first on ties, as argmax) and its softmax probability."""
    best = 0
    m = logits[0]
    for i in range(1, logits.shape[0]):
        if logits[i] > m:
            m, best = logits[i], i
    s = np.float32(0.0)
    for i in range(logits.shape[0]):
        s += np.exp(logits[i] - m)
    return best, 1.0 / s


class ModelDrafter:
    """Drafts with a small model of the same vocabulary, greedily, in a KV cache of its own.

    The draft cache keeps the context it has seen; each round only the tokens that differ are evaluated
    (the last sampled token, and the drafted ones that were accepted but not yet fed).
    `n_threads` fixes the draft's kernel threads (llama.cpp's -td) and restores the target's after each
    draft; else `tuner` picks them per step, and the target's next chunk runs on the same choice.
    """

    def __init__(self, model: DecoderModel, n_ctx: int, params: DraftParams | None = None,
                 n_vocab_target: int | None = None, n_threads: int | None = None,
                 tuner: ThreadTuner | None = None, n_batch: int = 512,
                 cache_types: tuple[GGMLType, GGMLType] = (GGMLType.F16, GGMLType.F16)):
        self.params = params or DraftParams()
        self.params.validate()
        self.model = model
        self.n_vocab = min(model.args.n_vocab, n_vocab_target or model.args.n_vocab)
        # a target with more (padding) tokens could sample an id the draft cannot embed: checked then
        self.check_ids = (n_vocab_target or 0) > model.args.n_vocab
        self.n_threads = n_threads
        self.seq = Sequence(model, model.new_cache(n_ctx, 1, False, *cache_types), n_batch=n_batch, tuner=tuner)

    def draft(self, context: list[int], n_max: int) -> list[int]:
        p = self.params
        n_max = min(n_max, p.n_max, self.seq.n_ctx - len(context))
        if n_max <= 0 or n_max < p.n_min:
            return []
        if self.check_ids and max(context[self.seq.common_prefix(context):]) >= self.model.args.n_vocab:
            return []
        prev = SETTINGS.n
        if self.n_threads:
            set_active_threads(self.n_threads)
        try:
            out = self._draft(context, n_max)
        finally:
            if self.n_threads:
                set_active_threads(prev)
        return out if len(out) >= p.n_min else []

    def _draft(self, context: list[int], n_max: int) -> list[int]:
        logits = self.seq.prefill(context)
        out: list[int] = []
        while True:
            token, prob = top_token(logits)
            if prob < self.params.p_min or token >= self.n_vocab:
                return out
            out.append(token)
            if len(out) >= n_max:
                return out  # not fed: the next round feeds it if it was accepted
            logits = self.seq.feed([token])


class CallableDrafter:
    """llama-cpp-python's `draft_model` interface (`LlamaDraftModel`): `f(input_ids) -> draft ids`, called
    with the whole sequence so far (e.g. its `LlamaPromptLookupDecoding`)."""

    def __init__(self, fn: Callable[..., Any], n_vocab: int, n_max: int = 16):
        self.fn, self.n_vocab, self.n_max = fn, n_vocab, n_max

    def draft(self, context: list[int], n_max: int) -> list[int]:
        ids = np.asarray(self.fn(np.asarray(context, np.intc))).ravel()[:min(n_max, self.n_max)]
        out = []
        for t in ids.tolist():  # an id outside the vocabulary ends the draft
            if not 0 <= t < self.n_vocab:
                break
            out.append(int(t))
        return out


def compatibility_error(target: Any, draft: Any) -> str | None:
    """Why `draft`'s tokenizer cannot draft for `target`'s (None if it can): the same vocabulary type,
    BOS/EOS handling and token texts, sizes within VOCAB_SIZE_SLACK (llama.cpp's checks)."""
    tv, dv = target.vocab, draft.vocab
    if tv.type != dv.type:
        return f"vocabulary types differ (target {tv.type}, draft {dv.type})"
    if abs(target.n_vocab - draft.n_vocab) > VOCAB_SIZE_SLACK:
        return f"vocabulary sizes differ (target {target.n_vocab} tokens, draft {draft.n_vocab})"
    for what, a, b in (("add_bos", target.add_bos, draft.add_bos), ("add_eos", target.add_eos, draft.add_eos),
                       ("BOS id", target.bos_id, draft.bos_id), ("EOS id", target.eos_id, draft.eos_id)):
        if a != b:
            return f"{what} differs (target {a}, draft {b})"
    n = min(target.n_vocab, draft.n_vocab)
    if tv.tokens[:n] != dv.tokens[:n]:
        i = next(i for i in range(n) if tv.tokens[i] != dv.tokens[i])
        return f"token {i} differs (target {tv.tokens[i]!r}, draft {dv.tokens[i]!r})"
    return None
