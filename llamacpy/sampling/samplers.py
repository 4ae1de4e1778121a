"""llama.cpp's samplers (src/llama-sampler.cpp of 0c1e570), one function each, over a candidate array.

`Candidates` is llama.cpp's `llama_token_data_array`: ids, logits and probabilities in their current
order, whether that order is sorted by logit, and the selected index. Each sampler keeps llama.cpp's
arithmetic (float32 values, sequential sums, which order a filter keeps, when it sorts), because the
order of the candidates decides which one a seeded draw lands on.
"""

from __future__ import annotations

import numpy as np

from .stdrng import StdMT19937

F32 = np.float32


class Candidates:
    """The ids are materialized only when asked for (`_ids` None: the identity, every token in id order),
    the probabilities only once a sampler computes them: most steps keep 40 of 150k candidates."""

    __slots__ = ("_ids", "_p", "logits", "selected", "sorted")

    def __init__(self, logits: np.ndarray):
        self.logits = np.array(logits, dtype=F32)
        self._ids: np.ndarray | None = None
        self._p: np.ndarray | None = None
        self.sorted = False
        self.selected = -1

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = np.arange(len(self.logits))
        return self._ids

    @property
    def p(self) -> np.ndarray:
        if self._p is None:
            self._p = np.zeros(len(self.logits), F32)
        return self._p

    @p.setter
    def p(self, value: np.ndarray) -> None:
        self._p = value

    def take(self, index) -> None:
        if self._ids is None:
            self._ids = np.arange(len(self.logits))[index] if isinstance(index, slice) else np.asarray(index)
        else:
            self._ids = self._ids[index]
        self.logits = self.logits[index]
        if self._p is not None:
            self._p = self._p[index]

    def sort(self, k: int | None = None) -> None:
        """Descending by logit (the first k only, and drop the rest, when k is given)."""
        n = len(self)
        if k is not None and k < n:
            top = np.argpartition(self.logits, n - k)[n - k:]
            self.take(top[np.argsort(-self.logits[top], kind="stable")])
        else:
            self.take(np.argsort(-self.logits, kind="stable"))
        self.sorted = True

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(where in the candidates, which of `ids`) for the ids that are candidates."""
        if self._ids is None:
            which = np.flatnonzero((ids >= 0) & (ids < len(self)))
            return ids[which], which
        if len(self) == 0 or len(ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        order = np.argsort(self._ids, kind="stable")
        at = np.searchsorted(self._ids, ids, sorter=order).clip(0, len(self) - 1)
        pos = order[at]
        hit = self._ids[pos] == ids
        return pos[hit], np.flatnonzero(hit)


def softmax(c: Candidates, do_sort: bool) -> None:
    if do_sort and not c.sorted:
        c.sort()
    m = c.logits[0] if c.sorted else c.logits.max()
    e = np.exp(c.logits - m)
    c.p = e / np.cumsum(e)[-1]  # a sequential float sum, as llama.cpp's loop


def temp_impl(c: Candidates, temp: float) -> None:
    if len(c) == 0:
        return
    if temp <= 0:  # the first highest logit stays, the rest become -inf (the array keeps its size)
        best = int(np.argmax(c.logits))
        keep = c.logits[best]
        c.logits[:] = -np.inf
        c.logits[best] = keep
        return
    c.logits = c.logits / F32(temp)


def top_k(c: Candidates, k: int) -> None:
    if k <= 0:
        return
    k = min(k, len(c))
    if not c.sorted:
        c.sort(k)
    c.take(slice(0, k))


def top_p(c: Candidates, p: float, min_keep: int) -> None:
    if p >= 1.0:
        return
    softmax(c, False)
    n = len(c)
    if not c.sorted and n > 1024:  # as llama.cpp: try the 256 most likely first, sort everything only if short
        top = np.argpartition(c.logits, n - 256)[n - 256:]
        top = top[np.argsort(-c.logits[top], kind="stable")]
        ok = (np.cumsum(c.p[top]) >= F32(p)) & (np.arange(1, 257) >= min_keep)
        if ok.any():
            c.take(top[: int(np.argmax(ok)) + 1])
            c.sorted = True
            return
    if not c.sorted:
        c.sort()
    ok = (np.cumsum(c.p) >= F32(p)) & (np.arange(1, n + 1) >= min_keep)
    c.take(slice(0, int(np.argmax(ok)) + 1 if ok.any() else n))


def min_p(c: Candidates, p: float, min_keep: int) -> None:
    if p <= 0.0 or len(c) == 0:
        return
    log_p = np.log(F32(p))
    if not c.sorted:  # llama.cpp's unsorted path keeps the candidates' order
        keep = np.flatnonzero(c.logits >= c.logits.max() + log_p)
        if len(keep) and len(keep) >= min_keep:
            c.take(keep)
            return
        c.sort()
    cut = (c.logits[1:] < c.logits[0] + log_p) & (np.arange(1, len(c)) >= min_keep)
    c.take(slice(0, 1 + int(np.argmax(cut)) if cut.any() else len(c)))


def typical(c: Candidates, p: float, min_keep: int) -> None:
    if p >= 1.0:
        return
    softmax(c, True)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(c.p)
        entropy = np.cumsum(-c.p * logp)[-1]
        shifted = np.abs(-logp - entropy)
    order = np.argsort(shifted, kind="stable")
    cum = np.cumsum(c.p[order])
    ok = (cum > F32(p)) & ((min_keep == 0) | (np.arange(len(c)) >= min_keep - 1))
    c.take(order[: int(np.argmax(ok)) + 1 if ok.any() else len(c)])
    c.sorted = False


def temp_ext(c: Candidates, temp: float, delta: float, exponent: float) -> None:
    if delta <= 0:
        temp_impl(c, temp)
        return
    lo, hi = max(F32(0), F32(temp) - F32(delta)), F32(temp) + F32(delta)
    if len(c) <= 1:
        return
    max_entropy = -np.log(F32(1) / F32(len(c)))
    softmax(c, True)
    pos = c.p[c.p > 0]
    entropy = -np.cumsum(pos * np.log(pos))[-1] if len(pos) else F32(0)
    dyn = lo + (hi - lo) * np.power(F32(entropy / max_entropy), F32(exponent))
    temp_impl(c, float(dyn))
    e = np.exp(c.logits.astype(np.float64) - float(c.logits[0]))
    c.p = (e / np.cumsum(e)[-1]).astype(F32)


def xtc(c: Candidates, probability: float, threshold: float, min_keep: int, rng: StdMT19937) -> None:
    if probability <= 0.0 or threshold > 0.5 or len(c) < 2:
        return
    if rng.uniform_float() > F32(probability):
        return
    softmax(c, True)
    above = c.p >= F32(threshold)
    last = (int(np.argmin(above)) if not above.all() else len(c)) - 1  # last of the leading run above
    last = max(last, 0)
    if len(c) - last >= min_keep and last > 0:
        c.take(slice(last, None))


def top_n_sigma(c: Candidates, n: float) -> None:
    if n <= 0.0 or len(c) <= 1:
        return
    valid = c.logits[c.logits != -np.inf]
    if len(valid) == 0:
        return
    top = max(c.logits[0], valid.max())
    mean = np.cumsum(valid)[-1] / F32(len(valid))
    std = np.sqrt(np.cumsum(np.square((valid - mean).astype(np.float64)).astype(F32))[-1] / F32(len(valid)))
    c.logits = np.where(c.logits < top - F32(n) * F32(std), F32(-np.inf), c.logits).astype(F32)


def dist(c: Candidates, rng: StdMT19937) -> None:
    """The seeded draw: softmax and one uniform double, the first candidate whose running sum reaches it."""
    if len(c) == 0:
        c.selected = -1
        return
    c.selected = 0
    if len(c) == 1:
        rng.uniform_double()  # llama.cpp draws once per output, whatever the size
        c.p = np.ones(1, F32)
        return
    m = c.logits[0] if c.sorted else c.logits.max()
    e = np.exp(c.logits - m)
    run = np.cumsum(e.astype(np.float64))
    total = run[-1]
    target = total * rng.uniform_double()
    c.selected = min(int(np.searchsorted(run, target, side="left")), len(c) - 1)
    c.p = (e / total).astype(F32)


class Mirostat:
    """Mirostat 1.0 (version=1, over the m most likely tokens) or 2.0 (version=2); state: mu."""

    def __init__(self, version: int, n_vocab: int, seed: int, tau: float, eta: float, m: int = 100):
        self.version, self.n_vocab, self.m = version, n_vocab, m
        self.tau, self.eta = F32(tau), F32(eta)
        self.mu = F32(2) * self.tau
        self.rng = StdMT19937(seed)

    def apply(self, c: Candidates) -> None:
        softmax(c, True)
        if self.version == 1:
            n = min(self.m - 1, len(c) - 1)
            i = np.arange(n, dtype=F32)
            t = np.log((i + F32(2)) / (i + F32(1)))
            with np.errstate(divide="ignore", invalid="ignore"):
                b = np.log(c.p[:n] / c.p[1 : n + 1])
                s_hat = np.cumsum(t * b)[-1] / np.cumsum(t * t)[-1] if n > 0 else F32(np.nan)
                eps = s_hat - F32(1)
                k = np.power((eps * np.power(F32(2), self.mu)) / (F32(1) - np.power(F32(self.n_vocab), -eps)),
                             F32(1) / s_hat)
            top_k(c, max(int(k) if np.isfinite(k) else 1, 1))
        else:
            with np.errstate(divide="ignore"):
                over = -np.log2(c.p) > self.mu
            c.take(slice(0, max(int(np.argmax(over)) if over.any() else len(c), 1)))
        softmax(c, True)
        c.selected = self.rng.discrete(c.p)
        surprise = -np.log2(c.p[c.selected])
        self.mu = F32(self.mu - self.eta * (surprise - self.tau))
