"""The text layer over the engine: streamed detokenization and stop strings."""

from __future__ import annotations

from dataclasses import dataclass


class StopStrings:
    """Feeds text pieces; releases text that can no longer be part of a stop string.

    `push` returns (text safe to emit, stopped?). On a stop, the stop string and what follows it are
    dropped, as llama.cpp does.
    """

    def __init__(self, stops: list[str] | None):
        self.stops = [s for s in (stops or []) if s]
        self.pending = ""

    def push(self, piece: str) -> tuple[str, bool]:
        if not self.stops:
            return piece, False
        self.pending += piece
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        hold = max((self._partial(s) for s in self.stops), default=0)
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold:]
        return out, False

    def _partial(self, stop: str) -> int:
        """Length of the longest tail of pending text that is a proper prefix of `stop`."""
        for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
            if self.pending.endswith(stop[:n]):
                return n
        return 0

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


@dataclass
class Completion:
    """One piece of streamed output."""

    text: str
    token: int | None = None
    finish_reason: str | None = None  # "stop" or "length" on the last piece
