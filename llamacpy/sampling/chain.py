"""The sampler chain in llama.cpp's default order.

logit bias -> penalties (repeat/presence/frequency over the last `repeat_last_n` tokens) -> top-k ->
top-p -> min-p -> temperature -> seeded draw. temperature <= 0 is greedy (argmax after bias and
penalties), as in llama.cpp.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

SEED_RANDOM = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: pick a random seed


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = SEED_RANDOM
    logit_bias: dict[int, float] = field(default_factory=dict)

    def validate(self) -> None:
        if self.top_p < 0 or self.min_p < 0 or self.repeat_last_n < -1:
            raise ValueError("top_p, min_p must be >= 0 and repeat_last_n >= -1")


class TokenConstraint(Protocol):
    """Which tokens may come next (grammar.py's `Constraint`): masks logits, follows the drawn tokens."""

    done: bool

    def mask(self, logits: np.ndarray) -> None: ...
    def accept(self, token: int) -> None: ...


class Sampler:
    """Stateful per sequence: it remembers recent tokens (for penalties) and owns its random stream.
    With a constraint, tokens it disallows are removed before the chain runs."""

    def __init__(self, params: SamplingParams, n_vocab: int, constraint: TokenConstraint | None = None):
        params.validate()
        self.p, self.n_vocab = params, n_vocab
        self.constraint = constraint
        self.last: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.float32))  # sample()'s
        seed = params.seed if params.seed not in (SEED_RANDOM, -1, None) else None
        self.rng = np.random.default_rng(seed)
        window = params.repeat_last_n if params.repeat_last_n >= 0 else 1 << 30
        self.recent: deque[int] = deque(maxlen=window or None) if window else deque(maxlen=0)
        bias = params.logit_bias or {}
        self._bias_ids = np.array([int(k) for k in bias], dtype=np.int64)
        self._bias_vals = np.array([float(v) for v in bias.values()], dtype=np.float32)

    def accept(self, token: int) -> None:
        """Record a token of the sequence (prompt or generated) for the penalties."""
        if self.recent.maxlen != 0:
            self.recent.append(int(token))

    def _penalize(self, logits: np.ndarray) -> None:
        p = self.p
        if not self.recent or (p.repeat_penalty == 1.0 and p.presence_penalty == 0.0 and p.frequency_penalty == 0.0):
            return
        counts = Counter(self.recent)
        ids = np.fromiter(counts.keys(), dtype=np.int64)
        n = np.fromiter(counts.values(), dtype=np.float32)
        ids_ok = ids < len(logits)
        ids, n = ids[ids_ok], n[ids_ok]
        v = logits[ids]
        v = np.where(v <= 0, v * p.repeat_penalty, v / p.repeat_penalty)
        logits[ids] = v - n * p.frequency_penalty - p.presence_penalty

    def probabilities(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate ids and their probabilities after the whole chain (before the draw)."""
        logits = np.array(logits, dtype=np.float32)
        if self.constraint is not None:
            self.constraint.mask(logits)
        if len(self._bias_ids):
            ok = (self._bias_ids >= 0) & (self._bias_ids < len(logits))
            logits[self._bias_ids[ok]] += self._bias_vals[ok]
        self._penalize(logits)
        p = self.p
        if p.temperature <= 0:
            best = int(np.argmax(logits))
            return np.array([best]), np.array([1.0], np.float32)
        k = p.top_k if 0 < p.top_k < len(logits) else len(logits)
        ids = np.argpartition(-logits, k - 1)[:k] if k < len(logits) else np.arange(len(logits))
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        vals = logits[ids]
        finite = np.isfinite(vals)
        ids, vals = ids[finite], vals[finite]
        probs = np.exp(vals - vals[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            cut = int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1
            ids, vals = ids[:cut], vals[:cut]
            probs = probs[:cut] / probs[:cut].sum()
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs[0]
            ids, vals = ids[keep], vals[keep]
        scaled = vals / np.float32(p.temperature)
        probs = np.exp(scaled - scaled[0])
        return ids, (probs / probs.sum()).astype(np.float32)

    def sample(self, logits: np.ndarray) -> int:
        ids, probs = self.last = self.probabilities(logits)  # last: for post-sampling probabilities
        token = int(ids[0]) if len(ids) == 1 else int(self.rng.choice(ids, p=probs))
        self.accept(token)
        if self.constraint is not None:
            self.constraint.accept(token)
        return token

    @property
    def constraint_done(self) -> bool:
        """The constraint is complete and allows nothing more: the generation should end here."""
        return self.constraint is not None and self.constraint.done


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return (x - np.log(np.exp(x).sum())).astype(np.float32)
