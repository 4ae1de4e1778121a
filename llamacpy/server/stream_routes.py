"""Resumable streams over HTTP: the X-Conversation-Id opt-in and the replay routes.

    POST <any streaming completion route>      X-Conversation-Id: <id>   (the generation outlives its client)
    GET    /v1/stream/<id>?from=N  |  /v1/stream?conv_id=<id>&from=N  (or Last-Event-ID: N)
    DELETE /v1/stream/<id>         |  /v1/stream?conv_id=<id>          (stop; 204, idempotent)
    POST   /v1/streams/lookup      {"conversation_ids": [...]}         (status of those ids only)

With the header, the streamed response's chunks are drained into a `StreamSession` by a producer task that
no socket owns; the POST's own response, like every GET, is a consumer of the session (`SessionStream`),
so a client leaving ends only its own response. Sessions live in `ServerContext.streams`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .errors import ApiError, bad_request
from .sse import SSE_HEADERS, EventStream
from .streams import ReadState, StreamManager, StreamSession, TooManyStreams

log = logging.getLogger("llamacpy.server")

HEADER = "x-conversation-id"
LOOKUP_BODY_LIMIT = 1 << 20

MISSING_ID = ApiError(400, "Missing conversation id in path")
NOT_FOUND = ApiError(404, "Stream not found or expired")
OFFSET_LOST = ApiError(400, "Stream offset lost, please restart")


def _manager(request: Request) -> StreamManager:
    return request.app.state.ctx.streams


# -- the opt-in ------------------------------------------------------------------------------------------------

def resumable(handler: Callable[[Request], Awaitable[object]]) -> Callable[[Request], Awaitable[object]]:
    """Wrap a completion route: a streamed answer to a request with `X-Conversation-Id` is generated into
    a session instead of straight into the socket. Anything else passes through unchanged (disconnect
    still cancels)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> object:
        response = await handler(request)
        conversation_id = request.headers.get(HEADER, "")
        if not conversation_id or not isinstance(response, EventStream):
            return response
        # created only now: the request was valid and its generation accepted (as the spec recommends)
        try:
            session = _manager(request).create(conversation_id)
        except TooManyStreams as e:
            response.on_disconnect()
            raise ApiError(503, f"{e}; retry later or DELETE a finished stream") from None
        session.on_cancel(response.on_disconnect)  # DELETE / replacement / shutdown stop the engine request
        _manager(request).start_producer(session, response.chunks)
        return SessionStream(session, 0, first=True)

    return endpoint


# -- a consumer ------------------------------------------------------------------------------------------------

class SessionStream:
    """Writes a session's bytes from `offset` to one client, following live bytes until the session ends.

    The client leaving ends this response only. With `first` (the generating POST's own response) it first
    waits for the first byte, so that a generation failing before its first byte gets a plain JSON error
    with its status, as without the header. A client that falls more than the buffer cap behind (it stopped
    reading) is overtaken: its response ends without the stream's terminator, and resuming from its offset
    answers 400 "Stream offset lost".
    """

    def __init__(self, session: StreamSession, offset: int = 0, first: bool = False):
        self.session, self.offset, self.first = session, offset, first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                await self._write(scope, receive, send)
            except OSError:  # the socket went away mid-write: only this reader ends
                pass
            finally:
                tg.cancel_scope.cancel()

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.session
        if self.first:
            await s.wait(0)  # the first byte, or the end
            if s.error is not None and s.total_bytes == 0:
                error = s.error if isinstance(s.error, ApiError) else ApiError(500, f"{type(s.error).__name__}: "
                                                                                     f"{s.error}")
                await error.response()(scope, receive, send)
                return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        async for chunk in s.follow(self.offset):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- the routes ------------------------------------------------------------------------------------------------

def _conversation_id(request: Request) -> str:
    """From the path (already percent-decoded) or, in the newer form, from `?conv_id=`."""
    cid = request.path_params.get("conv_id")
    if cid is None:
        cid = request.query_params.get("conv_id", "")
    if not cid:
        raise MISSING_ID
    return cid


def _offset(request: Request) -> int:
    """`?from=N`, else the SSE standard `Last-Event-ID: N`, else 0."""
    raw = request.query_params.get("from")
    name = "from"
    if raw is None:
        raw, name = request.headers.get("last-event-id"), "Last-Event-ID"
    if raw is None or raw == "":
        return 0
    raw = raw.strip()
    if not raw.isdecimal() or not raw.isascii():
        raise bad_request(f"Invalid '{name}' offset" if name == "from" else "Invalid 'Last-Event-ID' offset")
    return int(raw)


async def stream_get(request: Request) -> object:
    """Replay a session from a byte offset, then follow it live until it ends."""
    cid = _conversation_id(request)
    offset = _offset(request)
    session = _manager(request).get(cid)
    if session is None:
        raise NOT_FOUND
    _, state = session.read(offset, limit=0)
    if state is ReadState.LOST:
        raise OFFSET_LOST
    if offset > session.total_bytes:
        # No byte past the end was ever sent, so such an offset belongs to another stream (one this id
        # replaced) or to nothing: refuse rather than wait and hand out bytes of a different generation.
        raise bad_request(f"Invalid 'from' offset: the stream has {session.total_bytes} bytes so far")
    return SessionStream(session, offset)


async def stream_delete(request: Request) -> Response:
    """Stop a session's generation and forget it; 204 whether or not it existed."""
    cid = _conversation_id(request)
    manager = _manager(request)
    if not manager.delete(cid):
        log.warning("DELETE /v1/stream: no session %r (%d live)", cid, len(manager.live_ids()))
    return Response(status_code=204, media_type="application/json")


async def streams_lookup(request: Request) -> Response:
    """Status of the sessions of the ids asked (each also matches `id::<model>`); never a listing."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > LOOKUP_BODY_LIMIT:
            raise ApiError(413, f"the request body is larger than {LOOKUP_BODY_LIMIT} bytes")
    try:
        body = json.loads(raw or b"null")
    except ValueError as e:  # llama-server's shape here: no "code" field
        return JSONResponse({"error": {"message": f"invalid body: {e}", "type": "invalid_request_error"}},
                            status_code=400)
    ids = body.get("conversation_ids") if isinstance(body, dict) else None
    return JSONResponse(_manager(request).lookup(ids if isinstance(ids, list) else []))
