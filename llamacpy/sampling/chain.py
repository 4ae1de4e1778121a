"""The sampler chain, as llama.cpp's common_sampler builds it.

logit bias -> the `samplers` in order (default: penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p,
xtc, temperature) -> the seeded draw; with mirostat 1 or 2: logit bias -> temperature -> mirostat instead.
Each sampler is llama.cpp's (samplers.py, dry.py) and the random draws are its std::mt19937 streams
(stdrng.py), so a seeded request gives llama-server's tokens. temperature <= 0 keeps only the most likely
token (after the penalties), as llama.cpp does. With a grammar, the chain samples first and only if the
token breaks the grammar samples again over the allowed tokens (llama.cpp's rejection sampling).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import samplers as S
from .dry import Breakers, Dry
from .stdrng import StdMT19937

log = logging.getLogger(__name__)

SEED_RANDOM = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: pick a random seed

DEFAULT_SAMPLERS = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature")
_CHARS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typ_p", "p": "top_p",
          "m": "min_p", "x": "xtc", "t": "temperature", "i": "infill", "a": "adaptive_p"}
_CANONICAL = (*DEFAULT_SAMPLERS, "infill", "adaptive_p")
_ALIASES = {**{n: n for n in _CANONICAL}, **{n.replace("_", "-"): n for n in _CANONICAL if "_" in n},
            **{n.replace("_", ""): n for n in _CANONICAL if "_" in n},
            "nucleus": "top_p", "temp": "temperature", "typ": "typ_p"}
UNSUPPORTED = {"infill": "the infill sampler", "adaptive_p": "the adaptive-p sampler"}


def sampler_names(value: str | list[str]) -> tuple[str, ...]:
    """llama.cpp's `samplers`: a list of names (aliases allowed, any case) or a string of their letters
    ("edskypmxt"). Unknown entries are dropped with a warning, as llama.cpp does."""
    if isinstance(value, str):
        names, table = list(value), _CHARS
    else:
        names, table = [str(n).lower() for n in value], _ALIASES
    out = []
    for n in names:
        if n in table:
            out.append(table[n])
        else:
            log.warning("unable to match sampler %r", n)
    return tuple(out)


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    top_n_sigma: float = -1.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = 64
    dry_sequence_breakers: tuple[str, ...] = ("\n", ":", '"', "*")
    dry_breakers: Breakers | None = None  # the breakers as token sequences (dry.breaker_sequences)
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    min_keep: int = 0
    samplers: tuple[str, ...] = DEFAULT_SAMPLERS
    seed: int = SEED_RANDOM
    logit_bias: dict[int, float] = field(default_factory=dict)

    def validate(self) -> None:
        if self.top_p < 0 or self.min_p < 0 or self.repeat_last_n < -1 or self.min_keep < 0:
            raise ValueError("top_p, min_p and min_keep must be >= 0 and repeat_last_n >= -1")
        if self.mirostat not in (0, 1, 2):
            raise ValueError("mirostat must be 0, 1 or 2")
        for name in self.samplers:
            if name in UNSUPPORTED:
                raise ValueError(f"llamacpy does not support {UNSUPPORTED[name]} yet")
            if name not in _CANONICAL:
                raise ValueError(f"unknown sampler {name!r}")

    @property
    def dry_on(self) -> bool:
        return "dry" in self.samplers and self.mirostat == 0 and Dry.enabled(
            self.dry_multiplier, self.dry_base, self.dry_penalty_last_n)


class TokenConstraint(Protocol):
    """Which tokens may come next (grammar.py's `Constraint`): masks logits, follows the drawn tokens."""

    done: bool

    def mask(self, logits: np.ndarray) -> None: ...
    def accept(self, token: int) -> None: ...


class Penalties:
    """Repeat, frequency and presence penalties over the last `last_n` tokens (-1: all of them)."""

    def __init__(self, p: SamplingParams):
        self.repeat, self.freq, self.present = np.float32(p.repeat_penalty), p.frequency_penalty, p.presence_penalty
        self.off = p.repeat_last_n == 0 or (p.repeat_penalty == 1.0 and self.freq == 0.0 and self.present == 0.0)
        self.recent: deque[int] = deque(maxlen=None if p.repeat_last_n < 0 else p.repeat_last_n)
        self.count: Counter[int] = Counter()

    def accept(self, token: int) -> None:
        if self.off:
            return
        if self.recent.maxlen is not None and len(self.recent) == self.recent.maxlen:
            old = self.recent[0]
            self.count[old] -= 1
            if not self.count[old]:
                del self.count[old]
        self.recent.append(token)
        self.count[token] += 1

    def apply(self, c: S.Candidates) -> None:
        if self.off or not self.count:
            return
        ids = np.fromiter(self.count, dtype=np.int64, count=len(self.count))
        n = np.fromiter(self.count.values(), dtype=np.float32, count=len(self.count))
        pos, which = c.positions(ids)
        v = c.logits[pos]
        v = np.where(v <= 0, v * self.repeat, v / self.repeat)
        c.logits[pos] = v - (n[which] * np.float32(self.freq) + np.float32(self.present))
        c.sorted = False


class Sampler:
    """Stateful per sequence: it remembers recent tokens (penalties, DRY), owns llama.cpp's random
    streams (one per random sampler, all seeded alike) and the mirostat state."""

    def __init__(self, params: SamplingParams, n_vocab: int, constraint: TokenConstraint | None = None):
        params.validate()
        self.p, self.n_vocab, self.constraint = params, n_vocab, constraint
        self._last: S.Candidates | None = None  # the last sample()'s candidates
        seed = params.seed if params.seed not in (SEED_RANDOM, -1, None) else secrets.randbits(32)
        self.rng, self.xtc_rng = StdMT19937(seed), StdMT19937(seed)
        self.penalties = Penalties(params)
        self.dry: Dry | None = None
        if params.dry_on:
            if params.dry_breakers is None and params.dry_sequence_breakers:
                raise ValueError("DRY sequence breakers must be tokenized first (dry.breaker_sequences)")
            self.dry = Dry(params.dry_multiplier, params.dry_base, params.dry_allowed_length,
                           params.dry_penalty_last_n, params.dry_breakers or {})
        self.mirostat = (S.Mirostat(params.mirostat, n_vocab, seed, params.mirostat_tau, params.mirostat_eta)
                         if params.mirostat else None)
        self._greedy = self._greedy_only()
        bias = params.logit_bias or {}
        ids = np.array([int(k) for k in bias], dtype=np.int64)
        ok = (ids >= 0) & (ids < n_vocab)
        self._bias_ids = ids[ok]
        self._bias_vals = np.array([float(v) for v in bias.values()], dtype=np.float32)[ok]

    def accept(self, token: int) -> None:
        """Record a token of the sequence (prompt or generated) for the penalties and DRY."""
        self.penalties.accept(int(token))
        if self.dry is not None:
            self.dry.accept(token)

    def _greedy_only(self) -> bool:
        """Whether the chain can only end on the most likely token after the penalties and DRY: then
        `sample` takes that argmax without running the filters (no random draw is ever observed)."""
        p, order = self.p, self.p.samplers
        if p.temperature > 0 or p.mirostat or p.dynatemp_range > 0 or "temperature" not in order:
            return False
        if ("xtc" in order and p.xtc_probability > 0 and p.xtc_threshold <= 0.5) or (
                "typ_p" in order and p.typical_p < 1.0):
            return False
        modifiers = [i for i, n in enumerate(order) if n in ("penalties", "dry")]
        filters = [i for i, n in enumerate(order) if n in ("top_n_sigma", "top_k", "top_p", "min_p")]
        return not modifiers or not filters or max(modifiers) < min(filters)

    def _candidates(self, logits: np.ndarray) -> S.Candidates:
        c = S.Candidates(logits)
        if len(self._bias_ids):
            c.logits[self._bias_ids] += self._bias_vals
        return c

    def _argmax(self, logits: np.ndarray) -> S.Candidates:
        c = self._candidates(logits)
        self.penalties.apply(c)
        if self.dry is not None:
            self.dry.apply(c)
        best = int(np.argmax(c.logits))
        c.take(np.array([best]))
        c.p, c.selected = np.ones(1, np.float32), 0
        return c

    def _chain(self, logits: np.ndarray) -> S.Candidates:
        if self._greedy:
            return self._argmax(logits)
        p = self.p
        c = self._candidates(logits)
        if self.mirostat is not None:
            S.temp_impl(c, p.temperature)
            self.mirostat.apply(c)
            return c
        for name in p.samplers:
            if name == "penalties":
                self.penalties.apply(c)
            elif name == "dry":
                if self.dry is not None:
                    self.dry.apply(c)
            elif name == "top_n_sigma":
                S.top_n_sigma(c, p.top_n_sigma)
            elif name == "top_k":
                S.top_k(c, p.top_k)
            elif name == "typ_p":
                S.typical(c, p.typical_p, p.min_keep)
            elif name == "top_p":
                S.top_p(c, p.top_p, p.min_keep)
            elif name == "min_p":
                S.min_p(c, p.min_p, p.min_keep)
            elif name == "xtc":
                S.xtc(c, p.xtc_probability, p.xtc_threshold, p.min_keep, self.xtc_rng)
            elif name == "temperature":
                S.temp_ext(c, p.temperature, p.dynatemp_range, p.dynatemp_exponent)
        S.dist(c, self.rng)
        return c

    def sample(self, logits: np.ndarray) -> int:
        c = self._chain(logits)
        token = int(c.ids[c.selected])
        if self.constraint is not None:
            allowed = np.array(logits, dtype=np.float32)
            self.constraint.mask(allowed)
            if allowed[token] == -np.inf:
                c = self._chain(allowed)  # the token breaks the grammar: sample again over what it allows
                token = int(c.ids[c.selected])
        self._last = c
        self.accept(token)
        if self.constraint is not None:
            self.constraint.accept(token)
        return token

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """The last draw's candidates and their probabilities after the chain, most likely first (as
        llama-server's post-sampling probabilities: sorted by probability when the chain left them unsorted)."""
        c = self._last
        if c is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if not c.sorted:
            c.take(np.argsort(-c.p, kind="stable"))
            c.sorted = True
        return c.ids, c.p

    @property
    def constraint_done(self) -> bool:
        """The constraint is complete and allows nothing more: the generation should end here."""
        return self.constraint is not None and self.constraint.done


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return (x - np.log(np.exp(x).sum())).astype(np.float32)
