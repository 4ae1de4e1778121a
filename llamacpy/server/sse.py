"""Server-sent events: one producer makes every byte of a stream, one writer puts them on the socket.

`sse_bytes` produces the body of a streamed generation as byte chunks: `data: <json>\\n\\n` frames,
keep-alive comments `:\\n\\n` after `ping_interval` seconds of silence, an error frame if generation fails
after the stream started, and `data: [DONE]\\n\\n` at the end of OpenAI streams (the Anthropic and Responses
APIs name each frame instead, `event: <the object's type, or error>`, and have no [DONE]). `EventStream` writes
those chunks and watches for the client leaving. Resumable streams (X-Conversation-Id, stream_routes.py)
drain the chunks into a replay buffer instead, from which their responses read (see the marked line).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import ApiError
from .jsonio import json_bytes

log = logging.getLogger("llamacpy.server")

DONE = b"data: [DONE]\n\n"
PING = b":\n\n"
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def frame(obj: dict) -> bytes:
    return b"data: " + json_bytes(obj) + b"\n\n"


def named_frame(obj: dict) -> bytes:
    name = obj.get("type") if isinstance(obj.get("type"), str) else "error"
    return f"event: {name}\n".encode() + frame(obj)


async def sse_bytes(events: AsyncIterator[dict], oai: bool, ping_interval: float,
                    named: bool = False) -> AsyncIterator[bytes]:
    """The SSE body of one generation (see the module docstring); `named`: `event:` lines, no [DONE]."""
    write = named_frame if named else frame
    pending: asyncio.Future | None = None
    started = False
    try:
        while True:
            pending = asyncio.ensure_future(anext(events))
            while not (await asyncio.wait({pending}, timeout=ping_interval if ping_interval > 0 else None))[0]:
                started = True
                yield PING
            try:
                obj = pending.result()
            except StopAsyncIteration:
                break
            except ApiError as e:
                if not started:
                    raise  # nothing sent yet: the writer answers with a plain JSON error and its status
                yield write(e.body())
                return
            except Exception as e:  # a bug must still end the stream with an error frame
                log.exception("stream failed")
                yield write(ApiError(500, f"{type(e).__name__}: {e}").body())
                return
            started = True
            yield write(obj)
        if oai and not named:
            yield DONE
    finally:
        with anyio.CancelScope(shield=True):  # the client may be gone: clean up regardless
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.wait({pending})
            await events.aclose()


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream:
    """The streamed response: writes the producer's chunks; if the client leaves, calls `on_disconnect`
    (which cancels the generation) and stops at once."""

    def __init__(self, chunks: AsyncIterator[bytes], on_disconnect: Callable[[], None]):
        self.chunks, self.on_disconnect = chunks, on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                await _wait_disconnect(receive)
                self.on_disconnect()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                try:
                    chunk = await anext(self.chunks, None)
                except ApiError as e:  # failed before the first byte: a plain error response
                    await e.response()(scope, receive, send)
                    return
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                while chunk is not None:
                    # resumable streams (X-Conversation-Id) never get here: stream_routes.resumable drains
                    # `chunks` into their replay buffer and answers with a reader of that buffer instead
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    chunk = await anext(self.chunks, None)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the socket went away mid-write
                self.on_disconnect()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.chunks.aclose()
                tg.cancel_scope.cancel()


class GuardedResponse:
    """A non-streamed response computed by `produce()` while watching for the client leaving; if it
    leaves first, `on_disconnect` runs (cancelling the generation) and nothing is sent."""

    def __init__(self, produce: Callable[[], Awaitable[Response]], on_disconnect: Callable[[], None]):
        self.produce, self.on_disconnect = produce, on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response | None = None
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                await _wait_disconnect(receive)
                self.on_disconnect()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                response = await self.produce()
            except ApiError as e:
                response = e.response()
            finally:
                tg.cancel_scope.cancel()
        if response is not None:
            await response(scope, receive, send)
