"""One generation as the HTTP layer sees it: submit to the engine, turn its token events into text pieces.

The engine's events arrive on the engine thread and are handed to the event loop with
`call_soon_threadsafe`. Text is made here: streamed detokenization (complete UTF-8 only) and stop strings
(text that might begin a stop string is held back; on a stop the engine request is cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ..engine import DoneEvent, EndReason, Engine, ProgressEvent, Stats, TokenEvent
from ..engine.textgen import StopStrings
from ..tokenizer import Tokenizer
from .errors import ApiError
from .params import GenArgs


@dataclass
class Piece:
    """Text released by one or more tokens; the last piece of a generation has `finish` set."""

    text: str
    tokens: list[int]
    probs: list[dict]   # llama-server's probability entries of those tokens (when logprobs were asked)
    stats: Stats
    finish: str | None = None      # "stop" | "length"
    stop_type: str = "none"        # "eos" | "limit" | "word"
    stopping_word: str = ""
    progress: dict | None = None   # return_progress: {total, cache, processed, time_ms}, no text
    truncated: bool = False        # ended because the slot's context was full


@dataclass
class Result:
    """A whole generation (non-streamed responses)."""

    content: str = ""
    tokens: list[int] = field(default_factory=list)
    probs: list[dict] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    finish: str = "length"
    stop_type: str = "none"
    stopping_word: str = ""
    truncated: bool = False


class Generation:
    """Created on the event loop; `pieces()` yields the text as it is generated.

    `cancel()` stops the engine request (idempotent); call it when the client goes away.
    """

    def __init__(self, engine: Engine, tokenizer: Tokenizer, args: GenArgs,
                 on_end: Callable[[Generation, Piece], None] | None = None):
        self.engine, self.tokenizer, self.args, self.on_end = engine, tokenizer, args, on_end
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[TokenEvent | ProgressEvent | DoneEvent] = asyncio.Queue()
        self.done = False
        self.id = engine.submit(args.engine_request(self._sink))

    def _sink(self, event: TokenEvent | ProgressEvent | DoneEvent) -> None:  # engine thread
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop has closed (server exiting)
            pass

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            self.engine.cancel(self.id)

    async def pieces(self) -> AsyncIterator[Piece]:
        tok, args = self.tokenizer, self.args
        detok = tok.detokenizer(skip_special=True)
        stops = StopStrings(args.stop)
        tokens: list[int] = []
        probs: list[dict] = []
        try:
            while True:
                event = await self.events.get()
                if isinstance(event, DoneEvent):
                    self.done = True
                    yield self._ended(self._last_piece(event, detok, stops, tokens, probs))
                    return
                if isinstance(event, ProgressEvent):
                    yield Piece("", [], [], event.stats, progress={
                        "total": event.total, "cache": event.cache, "processed": event.processed,
                        "time_ms": event.time_ms})
                    continue
                tokens.append(event.token)
                eog = event.token in tok.eog_ids and not args.ignore_eos
                if event.logprob is not None and not eog:
                    probs.append(self.prob_entry(event.token, event.logprob, event.top or []))
                piece = "" if eog else detok.feed(event.token)
                held = stops.pending + piece
                text, stopped = stops.push(piece)
                if stopped:
                    self.cancel()
                    word = min((s for s in stops.stops if s in held), key=held.find)
                    yield self._ended(Piece(text, tokens, probs, event.stats, "stop", "word", word))
                    return
                if text:
                    yield Piece(text, tokens, probs, event.stats)
                    tokens, probs = [], []
        finally:
            self.cancel()

    def _ended(self, piece: Piece) -> Piece:
        if self.on_end is not None:
            self.on_end(self, piece)
        return piece

    def _last_piece(self, event: DoneEvent, detok, stops: StopStrings, tokens: list[int],
                    probs: list[dict]) -> Piece:
        if event.reason == EndReason.SHUTDOWN:
            raise ApiError(503, event.message or "the server is shutting down")
        if event.reason in (EndReason.ERROR, EndReason.CANCELLED):
            raise ApiError(500, event.message or "the generation was cancelled")
        text, _ = stops.push(detok.flush())
        text += stops.flush()
        eos = event.reason == EndReason.EOS
        return Piece(text, tokens, probs, event.stats, "stop" if eos else "length", "eos" if eos else "limit",
                     truncated=event.reason == EndReason.CONTEXT or event.stats.truncated)

    async def result(self) -> Result:
        out = Result()
        parts = []
        async for piece in self.pieces():
            parts.append(piece.text)
            out.tokens += piece.tokens
            out.probs += piece.probs
            out.stats = piece.stats
            if piece.finish:
                out.finish, out.stop_type, out.stopping_word = piece.finish, piece.stop_type, piece.stopping_word
                out.truncated = piece.truncated
        out.content = "".join(parts)
        return out

    def prob_entry(self, token: int, value: float, top: list[tuple[int, float]]) -> dict:
        """{"id", "token", "bytes", "logprob", "top_logprobs": [...]} as llama-server writes them; with
        post_sampling_probs {"prob", "top_probs"} (probabilities after the sampler chain)."""
        key = "prob" if self.args.post_sampling_probs else "logprob"
        entry = self._token_json(token, key, value)
        entry[f"top_{key}s"] = [self._token_json(t, key, v) for t, v in top]
        return entry

    def _token_json(self, token: int, key: str, value: float) -> dict:
        piece = self.tokenizer.token_to_piece(token, special=True)
        return {"id": token, "token": piece.decode("utf-8", "replace"), "bytes": list(piece), key: value}
