"""Relaying an upstream HTTP response to our client as it arrives, chunk by chunk (never buffered whole): the
router's answers from its children and the CORS proxy's from anywhere.

A client leaving closes the upstream. An upstream failing mid-answer ends the answer cleanly: an SSE stream gets
a final error event (the server's own in-stream error frame).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from .errors import ApiError

log = logging.getLogger("llamacpy.server")

# hop-by-hop headers, and those a proxy rewrites, are not passed on
DROPPED = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
           "proxy-authenticate", "host", "content-length"}


def request_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers of a request to pass on."""
    return [(k, v) for k, v in headers if k.decode("latin-1").lower() not in DROPPED]


class RelayedResponse:
    """An ASGI response relaying `upstream`; `gone(e)` is the error of an upstream failing mid-answer. Our own
    CORS headers are sent, the upstream's are not."""

    def __init__(self, upstream: httpx.Response, gone: Callable[[Exception], ApiError]):
        self.upstream, self.gone = upstream, gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        up = self.upstream
        is_sse = up.headers.get("content-type", "").startswith("text/event-stream")
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in up.headers.multi_items()
                   if (k.lower() not in DROPPED or (k.lower() == "content-length" and not is_sse))
                   and not k.lower().startswith("access-control-")]
        try:
            async with anyio.create_task_group() as tg:
                async def watch() -> None:  # the client leaving ends the relay (and closes the upstream)
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await send({"type": "http.response.start", "status": up.status_code, "headers": headers})
                last = b"\n\n"
                try:
                    async for chunk in up.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        last = chunk
                except httpx.TransportError as e:
                    error = self.gone(e)
                    log.warning("%s", error.message)
                    if is_sse:  # after the last complete event
                        frame = b"" if last.endswith(b"\n\n") else b"\n\n"
                        frame += f"data: {json.dumps(error.body())}\n\n".encode()
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        except OSError:  # our client's socket went away mid-write
            pass
        finally:
            await up.aclose()
