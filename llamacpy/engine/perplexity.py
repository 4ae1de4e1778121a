"""Perplexity by llama-perplexity's method.

The text is tokenized once; it is cut into chunks of n_ctx tokens; each chunk starts from an empty cache
(its first token replaced by BOS when the model adds one) and only its second half is scored: logits at
positions first = n_ctx/2 .. n_ctx-2 predict the next token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..models import DecoderModel
from .sequence import Sequence


@dataclass
class PerplexityResult:
    ppl: float
    stderr: float
    running: list[float]  # the estimate after each chunk
    n_tokens_scored: int


def nll_of_targets(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits[j])[targets[j]] for each row, in float64 like llama.cpp's log_softmax."""
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return lse - x[np.arange(len(targets)), targets]


def perplexity(model: DecoderModel, tokens: list[int], n_ctx: int, n_chunks: int = -1, n_batch: int = 512,
               bos_id: int | None = None, on_chunk: Callable[[int, int, float], None] | None = None,
               cache_types: tuple = ()) -> PerplexityResult:
    """`bos_id` is the token that replaces each chunk's first token (None when the model adds no BOS);
    `cache_types`: the KV cache's (type_k, type_v), f16 by default."""
    n_max = len(tokens) // n_ctx
    if len(tokens) < 2 * n_ctx:
        raise ValueError(f"you need at least {2 * n_ctx} tokens to evaluate perplexity with a context of "
                         f"{n_ctx} (the text has {len(tokens)} tokens)")
    n = n_max if n_chunks < 0 else min(n_chunks, n_max)
    first = n_ctx // 2
    seq = Sequence(model, model.new_cache(n_ctx, 1, False, *cache_types), n_batch=min(n_batch, n_ctx))
    nll_sum = nll2_sum = 0.0
    count = 0
    running = []
    for i in range(n):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        seq.reset()
        logits = seq.feed(chunk, all_logits=True)  # (n_ctx, n_vocab)
        targets = np.asarray(tokens[i * n_ctx + first + 1:(i + 1) * n_ctx])
        nll = nll_of_targets(logits[first:n_ctx - 1], targets)
        nll_sum += float(nll.sum())
        nll2_sum += float((nll * nll).sum())
        count += len(nll)
        running.append(math.exp(nll_sum / count))
        if on_chunk:
            on_chunk(i, n, running[-1])
    mean = nll_sum / count
    var = nll2_sum / count - mean * mean
    stderr = math.sqrt(var / (count - 1)) if var > 0 else 0.0
    ppl = math.exp(mean)
    return PerplexityResult(ppl, stderr * ppl, running, count)
