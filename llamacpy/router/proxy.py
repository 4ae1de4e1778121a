"""Passing a request to a child server and its answer back, streamed chunk by chunk (never buffered whole).

A client leaving closes the connection to the child, which then does what it does for any client gone
(cancels the generation, or keeps a resumable stream going). A child dying mid-answer ends the answer
cleanly: an SSE stream gets a final error event, anything else a 502 when nothing was sent yet.
"""

from __future__ import annotations

import json
import logging

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from ..server.errors import ApiError
from .child import Child

log = logging.getLogger("llamacpy.router")

# hop-by-hop headers, and those the proxy rewrites, are not passed on
DROPPED = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
           "proxy-authenticate", "host", "content-length"}


def _child_gone(child: Child, e: Exception) -> ApiError:
    state = f"exited with code {child.exit_code}" if child.exit_code is not None else f"stopped answering ({e})"
    return ApiError(502, f"model '{child.name}' {state}")


async def forward(client: httpx.AsyncClient, child: Child, method: str, path: str, query: str,
                  headers: list[tuple[bytes, bytes]], body: bytes | None = None) -> ProxiedResponse:
    """Send the request to the child; the response once its headers arrived (502 if the child is gone)."""
    kept = [(k, v) for k, v in headers if k.decode("latin-1").lower() not in DROPPED]
    url = f"{child.url}{path}" + (f"?{query}" if query else "")
    request = client.build_request(method, url, headers=kept + [(k.encode(), v.encode()) for k, v in
                                                                 child.headers.items()], content=body)
    try:
        upstream = await client.send(request, stream=True)
    except httpx.TransportError as e:
        raise _child_gone(child, e) from None
    return ProxiedResponse(upstream, child)


class ProxiedResponse:
    """An ASGI response relaying `upstream` as it arrives."""

    def __init__(self, upstream: httpx.Response, child: Child):
        self.upstream, self.child = upstream, child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        up = self.upstream
        is_sse = up.headers.get("content-type", "").startswith("text/event-stream")
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in up.headers.multi_items()
                   if (k.lower() not in DROPPED or (k.lower() == "content-length" and not is_sse))
                   and not k.lower().startswith("access-control-")]  # the router's own CORS headers are sent
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
                    error = _child_gone(self.child, e)
                    log.warning("%s", error.message)
                    if is_sse:  # the server's own in-stream error frame, after the last complete event
                        frame = b"" if last.endswith(b"\n\n") else b"\n\n"
                        frame += f"data: {json.dumps(error.body())}\n\n".encode()
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        except OSError:  # our client's socket went away mid-write
            pass
        finally:
            await up.aclose()
