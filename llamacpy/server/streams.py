"""Resumable streams (llama-server's SSE replay buffer): a generation that survives its client.

A request that carries `X-Conversation-Id` gets a `StreamSession`: every SSE byte its generation produces is
appended to the session's buffer *before* any socket sees it, by a producer that no socket owns
(`pump`). HTTP responses are only consumers (`StreamSession.follow`), so a client leaving never stops the
generation; DELETE, a second POST with the same id, completion or shutdown do.

Offsets are absolute: byte N of a session is byte N of the response body the original POST produced, even
after the oldest bytes were dropped to keep the buffer under its cap.

No HTTP here (the routes live in stream_routes.py); sessions are thread-safe and can be followed from
asyncio or from plain threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("llamacpy.server")

MiB = 1 << 20


@dataclass
class StreamLimits:
    """Memory and lifetime bounds of the replay buffer (upstream's constants, made settable)."""

    cap_bytes: int = 4 * MiB      # per session; the oldest bytes are dropped first
    ttl_s: float = 300.0          # a finished session stays replayable this long
    max_sessions: int = 128       # sessions held at once; finished ones give way to new ones first
    gc_interval_s: float = 60.0   # the collector's period (expiry itself is exact: checked on access too)

    def __post_init__(self) -> None:
        if self.cap_bytes <= 0 or self.max_sessions <= 0 or self.ttl_s < 0 or self.gc_interval_s <= 0:
            raise ValueError(f"invalid resumable stream limits: {self}")


class ReadState(enum.Enum):
    MORE = "more"  # the session may still grow past the offset
    END = "end"    # finished and fully read up to the offset
    LOST = "lost"  # the offset's bytes were dropped (cap) - the client must restart


class TooManyStreams(Exception):
    """Every session slot is held by a live generation."""


class StreamSession:
    """The bytes of one conversation's stream: a capped byte ring addressed by absolute offsets.

    One producer appends and finalizes; any number of readers read from offsets and wait for more.
    `cancel()` asks the producer to stop (DELETE, replacement, shutdown); readers then drain and end.
    """

    def __init__(self, conversation_id: str, cap_bytes: int = 4 * MiB, clock: Callable[[], float] = time.time):
        if cap_bytes <= 0:
            raise ValueError("cap_bytes must be positive")
        self.conversation_id = conversation_id
        self.cap_bytes = cap_bytes
        self.clock = clock
        self.started_at = int(clock())
        self.completed_at = 0          # unix seconds when finalized; 0 while live
        self.finished_clock = 0.0      # clock() at finalize, unrounded, for the TTL
        self.done = False
        self.cancelled = False         # read without the lock by producers (a plain bool is atomic)
        self.error: Exception | None = None  # what ended the producer before its first byte, if anything
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Live bytes are _data[_head:]; dropping bytes moves _head and the dead prefix is compacted away
        # once it is a quarter of the cap, so memory stays under ~1.25x the cap with O(1) amortized appends.
        self._data = bytearray()
        self._head = 0
        self._total = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = set()
        self._on_cancel: list[Callable[[], None]] = []

    # -- producer side --------------------------------------------------------------------------------------

    def append(self, chunk: bytes) -> bool:
        """Add bytes at the end; False (and nothing kept) once the session is finalized."""
        if not chunk:
            return not self.done
        with self._lock:
            if self.done:
                return False
            self._append_locked(bytes(chunk))
            self._cond.notify_all()
            waiters = self._take_waiters()
        _wake(waiters)
        return True

    def _append_locked(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if len(chunk) >= self.cap_bytes:  # the chunk alone fills the cap: keep its tail only
            self._data = bytearray(chunk[-self.cap_bytes:])
            self._head = 0
            return
        self._data += chunk
        overflow = len(self._data) - self._head - self.cap_bytes
        if overflow > 0:
            self._head += overflow
            if self._head >= self.cap_bytes // 4:
                del self._data[:self._head]
                self._head = 0

    def finalize(self) -> None:
        """Mark the stream finished and wake every reader; idempotent."""
        with self._lock:
            if self.done:
                return
            self.done = True
            self.finished_clock = self.clock()
            self.completed_at = int(self.finished_clock)
            self._cond.notify_all()
            waiters = self._take_waiters()
        _wake(waiters)

    def cancel(self) -> None:
        """Ask the producer to stop generating (it is finalized separately); idempotent."""
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, from the cancelling thread) when the session is cancelled."""
        with self._lock:
            if not self.cancelled:
                self._on_cancel.append(callback)
                return
        callback()

    # -- reader side ----------------------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        """Bytes ever appended, dropped ones included: the offset one past the last byte."""
        return self._total

    @property
    def dropped_bytes(self) -> int:
        """Bytes dropped from the front to respect the cap; offsets below this are lost."""
        with self._lock:
            return self._total - (len(self._data) - self._head)

    @property
    def held_bytes(self) -> int:
        """Memory held by the buffer (live bytes plus a not yet compacted dead prefix)."""
        return len(self._data)

    def read(self, offset: int, limit: int = MiB) -> tuple[bytes, ReadState]:
        """Up to `limit` contiguous bytes from `offset` (possibly none) and what the reader should do next."""
        with self._lock:
            dropped = self._total - (len(self._data) - self._head)
            if offset < dropped:
                return b"", ReadState.LOST
            start = self._head + (offset - dropped)
            data = bytes(self._data[start:start + limit]) if offset < self._total else b""
            end = self.done and offset + len(data) >= self._total
            return data, ReadState.END if end else ReadState.MORE

    def wait_sync(self, offset: int, timeout: float | None = None) -> bool:
        """Block until bytes past `offset` exist or the session is done; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.done or self._total > offset, timeout)

    async def wait(self, offset: int, timeout: float | None = None) -> bool:
        """`wait_sync` for asyncio: never blocks the event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.done or self._total > offset:
                return True
            waiter = (loop, loop.create_future())
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1], timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    async def follow(self, offset: int = 0, *, poll_s: float = 0.2,
                     gone: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[bytes]:
        """The bytes from `offset`, then live ones as they arrive, until the session is finalized and read.

        Ends early (silently: the HTTP status is already sent) if the cap overtakes the reader or when
        `gone()` (checked every `poll_s` of silence) says the client left.
        """
        while True:
            data, state = self.read(offset)
            if state is ReadState.LOST:
                return
            if data:
                offset += len(data)
                yield data
                continue
            if state is ReadState.END:
                return
            if not await self.wait(offset, poll_s) and gone is not None and await gone():
                return

    def status(self) -> dict:
        """What `POST /v1/streams/lookup` reports."""
        return {"conversation_id": self.conversation_id, "is_done": self.done, "total_bytes": self._total,
                "started_at": self.started_at, "completed_at": self.completed_at}

    def _take_waiters(self) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]:
        if not self._waiters:
            return []
        waiters = list(self._waiters)
        self._waiters.clear()
        return waiters


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]) -> None:
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for loop, fut in waiters:
        if loop is current:
            _resolve(fut)
        else:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting anymore
                loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class StreamManager:
    """Every session by conversation id: at most one per id, bounded in number, expired after a TTL.

    `clock` (unix seconds) is injectable so tests can move time.
    """

    def __init__(self, limits: StreamLimits | None = None, clock: Callable[[], float] = time.time):
        self.limits = limits or StreamLimits()
        self.clock = clock
        self._sessions: dict[str, StreamSession] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._gc: threading.Thread | None = None
        self._producers: set[asyncio.Task] = set()

    def create(self, conversation_id: str) -> StreamSession:
        """A fresh session for the id; an existing one is replaced, cancelled and finalized.

        Raises TooManyStreams when `max_sessions` live generations already hold a session.
        """
        session = StreamSession(conversation_id, self.limits.cap_bytes, self.clock)
        with self._lock:
            old = self._sessions.pop(conversation_id, None)
            if old is None and len(self._sessions) >= self.limits.max_sessions:
                self._make_room_locked(self.clock())
            self._sessions[conversation_id] = session
        if old is not None:
            _stop(old)
        return session

    def _make_room_locked(self, now: float) -> None:
        self._collect_locked(now)
        if len(self._sessions) < self.limits.max_sessions:
            return
        finished = [s for s in self._sessions.values() if s.done]
        if not finished:
            raise TooManyStreams(f"too many resumable streams: {len(self._sessions)} are generating "
                                 f"(--stream-max-sessions {self.limits.max_sessions})")
        oldest = min(finished, key=lambda s: s.finished_clock)
        del self._sessions[oldest.conversation_id]

    def get(self, conversation_id: str) -> StreamSession | None:
        """The id's session, or None when there is none or it expired."""
        with self._lock:
            session = self._sessions.get(conversation_id)
            if session is not None and self._expired(session, self.clock()):
                del self._sessions[conversation_id]
                return None
            return session

    def delete(self, conversation_id: str) -> bool:
        """Stop the id's generation and forget its bytes; False when there was no such session."""
        with self._lock:
            session = self._sessions.pop(conversation_id, None)
        if session is None:
            return False
        _stop(session)
        return True

    def lookup(self, conversation_ids: Iterable[object]) -> list[dict]:
        """Status of the sessions whose id is one asked, or one asked plus `::<model>`.

        Only ids asked are answered: there is deliberately no way to list sessions.
        """
        now = self.clock()
        with self._lock:
            sessions = [s for s in self._sessions.values() if not self._expired(s, now)]
        out = []
        for cid in conversation_ids:
            if not isinstance(cid, str) or not cid:
                continue
            out += [s.status() for s in sessions
                    if s.conversation_id == cid or s.conversation_id.startswith(cid + "::")]
        return out

    def __len__(self) -> int:
        return len(self._sessions)

    def live_ids(self) -> list[str]:
        """Ids still generating (for log lines only; never sent to a client)."""
        with self._lock:
            return [cid for cid, s in self._sessions.items() if not s.done]

    # -- lifetime -------------------------------------------------------------------------------------------

    def collect(self) -> int:
        """Drop finished sessions older than the TTL now; returns how many."""
        with self._lock:
            return self._collect_locked(self.clock())

    def _collect_locked(self, now: float) -> int:
        expired = [cid for cid, s in self._sessions.items() if self._expired(s, now)]
        for cid in expired:
            del self._sessions[cid]
        return len(expired)

    def _expired(self, session: StreamSession, now: float) -> bool:
        return session.done and now - session.finished_clock >= self.limits.ttl_s

    def start(self) -> None:
        """Start the background collector."""
        if self._gc is not None:
            return
        interval = max(0.05, min(self.limits.gc_interval_s, self.limits.ttl_s))
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                self.collect()

        self._gc = threading.Thread(target=run, name="llamacpy-stream-gc", daemon=True)
        self._gc.start()

    def stop(self) -> None:
        """Shutdown: join the collector, stop every generation and end every reader."""
        self._stop.set()
        if self._gc is not None:
            self._gc.join()
            self._gc = None
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for task in list(self._producers):
            task.cancel()
        for session in sessions:
            _stop(session)

    async def shutdown(self, grace_s: float = 1.0) -> None:
        """`stop()`, after giving running producers up to `grace_s` to record how their generation ended
        (once the engine has stopped, that is its shutdown error frame, which readers then still get)."""
        producers = list(self._producers)
        if producers:
            await asyncio.wait(producers, timeout=grace_s)
        self.stop()

    def start_producer(self, session: StreamSession, chunks: AsyncIterable[bytes]) -> asyncio.Task:
        """Run `pump(session, chunks)` as a task of the running loop, held until it ends."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(pump(session, chunks), name=f"stream-producer:{session.conversation_id}")
        self._producers.add(task)  # asyncio itself keeps only a weak reference
        task.add_done_callback(self._producers.discard)
        task.add_done_callback(lambda _: session.error is not None and self.forget(session))
        return task

    def forget(self, session: StreamSession) -> None:
        """Drop `session` from the map if it is still its id's session (a failed start leaves nothing)."""
        with self._lock:
            if self._sessions.get(session.conversation_id) is session:
                del self._sessions[session.conversation_id]


def _stop(session: StreamSession) -> None:
    # cancel first, so the producer stops pulling tokens before readers are told the stream ended
    session.cancel()
    session.finalize()


async def pump(session: StreamSession, chunks: AsyncIterable[bytes]) -> None:
    """Drain a generation's SSE chunks into the session: the producer no socket owns.

    Runs until the chunks end or the session is cancelled/finalized; cancelling the session cancels the
    task running this, so a generation waiting for its next token stops at once. Closing `chunks` is how
    the generation learns to stop (its cleanup cancels the engine request). An exception before the first
    byte is kept in `session.error` (the request can still get a plain error response).
    """
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        session.on_cancel(lambda: _call_soon(loop, task.cancel))
    iterator = aiter(chunks)
    try:
        if session.cancelled:
            return
        async for chunk in iterator:
            if not session.append(chunk) or session.cancelled:
                break
    except asyncio.CancelledError:
        if not session.cancelled:  # cancelled from elsewhere (shutdown): propagate
            raise
    except Exception as e:  # kept for whoever answers the request
        if session.total_bytes:
            log.exception("stream %r: the producer failed", session.conversation_id)
        else:  # nothing sent yet: the request can still be answered with a plain error
            session.error = e
    finally:
        try:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        finally:
            session.finalize()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the task is gone with it
        loop.call_soon_threadsafe(callback)

