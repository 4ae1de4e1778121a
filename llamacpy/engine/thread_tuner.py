"""Choosing, step by step, between all the kernel threads and one, by measuring which is faster now.

numba's OpenMP workers spin between parallel regions. On a machine whose cores are shared (another
process computing, or two router children decoding at once), a spinning pool waits at every barrier for a
worker that is not running: measured on 2 cores with one other busy process, smollm2 decoded 20.6 tokens/s
with 2 threads and 75.0 with 1 (122 with 2 on the quiet machine). Blocking workers (OMP_WAIT_POLICY=PASSIVE)
avoid the collapse but cost two thirds of the quiet speed (40 tokens/s), so the pool keeps spinning and
the engine picks the thread count instead:

- decode-only steps are timed, per batch shape (rows); the choice's recent mean is the reference;
- every `interval` steps, a few steps run with the other count (a probe); the faster on average wins (by a
  margin), and a probe step much slower than the reference ends the probe at once;
  a probe that confirms the choice doubles the interval (up to `MAX_INTERVAL`), a switch resets it;
- a sudden change of the choice's own speed (another process starting or ending) probes at once.

On a quiet machine the probes cost well under 1% once the interval has grown.
"""

from __future__ import annotations

import statistics
from collections import deque

from ..kernels.threads import set_active_threads

MIN_INTERVAL, MAX_INTERVAL = 16, 512  # steps between probes
PROBE_STEPS = 3
WINDOW = 8  # recent steps of the current choice kept
FIRST_SAMPLES = 3  # steps of a new choice or shape before it may be judged (a collapsed step can take 0.2 s)
SWITCH_MARGIN = 0.9  # the other count must be this much faster (time ratio) to take over
SHOCK = 1.6  # the choice's median moving by this factor (either way) since the last decision: probe now
GIVE_UP = 2.0  # a probe step this many times slower than the choice's mean ends the probe


class ThreadTuner:
    def __init__(self, n_max: int):
        self.n_max = n_max
        self.choice = n_max
        self.interval = MIN_INTERVAL
        self.since_probe = 0
        self.key: int | None = None  # the batch shape the samples belong to
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.probe: list[float] | None = None  # timings of the probe in progress
        self.baseline: float | None = None  # the choice's median at the last decision

    @classmethod
    def unless_given(cls, given: int | None, n_threads: int) -> ThreadTuner | None:
        """A tuner over `n_threads` when the user gave no thread count (`given` None) and there is a choice;
        None: the given (or only) count is used as it is."""
        return cls(n_threads) if given is None and n_threads > 1 else None

    @property
    def active(self) -> bool:
        return self.n_max > 1

    @property
    def other(self) -> int:
        return 1 if self.choice == self.n_max else self.n_max

    def threads_for_next_step(self) -> int:
        n = self.other if self.probe is not None else self.choice
        set_active_threads(n)
        return n

    def record(self, seconds: float, rows: int, decode_only: bool) -> None:
        """The step just run: its wall time, rows, and whether it was decode only (comparable)."""
        if not decode_only:
            return
        if rows != self.key:  # another shape: earlier samples do not compare
            self.key, self.probe, self.baseline = rows, None, None
            self.recent.clear()
        if self.probe is not None:
            self.probe.append(seconds)
            # a probe step far slower than the choice's average ends the probe at once: under contention a
            # spinning pool's step can take 15x longer, and a probe of several such steps costs seconds
            if len(self.probe) >= PROBE_STEPS or seconds > GIVE_UP * statistics.fmean(self.recent):
                self._decide()
            return
        self.recent.append(seconds)
        self.since_probe += 1
        if len(self.recent) < FIRST_SAMPLES:
            return
        now = statistics.median(self.recent)
        if self.baseline is None:
            self.baseline, self.since_probe = now, self.interval  # a new shape: compare at once
        shocked = not (1 / SHOCK < now / self.baseline < SHOCK)
        if shocked or self.since_probe >= self.interval:
            self.probe = []
            if shocked:
                self.interval = MIN_INTERVAL

    def _decide(self) -> None:
        # means, not medians: throughput is total time, and a contended pool's cost is in its slow tail
        mine, theirs = statistics.fmean(self.recent), statistics.fmean(self.probe)
        if theirs < SWITCH_MARGIN * mine:
            self.choice = self.other
            self.interval = MIN_INTERVAL
            self.recent.clear()
            self.recent.extend(self.probe)
            self.baseline = statistics.median(self.probe)
        else:
            self.interval = min(MAX_INTERVAL, self.interval * 2)
            self.baseline = mine
        self.probe, self.since_probe = None, 0
