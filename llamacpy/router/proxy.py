"""Passing a request to a child server and its answer back, streamed (server/relay.py).

A client leaving closes the connection to the child, which then does what it does for any client gone
(cancels the generation, or keeps a resumable stream going). A child dying mid-answer ends the answer
cleanly: an SSE stream gets a final error event, anything else a 502 when nothing was sent yet.
"""

from __future__ import annotations

import httpx

from ..server.errors import ApiError
from ..server.relay import RelayedResponse, request_headers
from .child import Child


def _child_gone(child: Child, e: Exception) -> ApiError:
    state = f"exited with code {child.exit_code}" if child.exit_code is not None else f"stopped answering ({e})"
    return ApiError(502, f"model '{child.name}' {state}")


async def forward(client: httpx.AsyncClient, child: Child, method: str, path: str, query: str,
                  headers: list[tuple[bytes, bytes]], body: bytes | None = None) -> RelayedResponse:
    """Send the request to the child; the response once its headers arrived (502 if the child is gone)."""
    url = f"{child.url}{path}" + (f"?{query}" if query else "")
    request = client.build_request(method, url, headers=request_headers(headers) + [
        (k.encode(), v.encode()) for k, v in child.headers.items()], content=body)
    try:
        upstream = await client.send(request, stream=True)
    except httpx.TransportError as e:
        raise _child_gone(child, e) from None
    return RelayedResponse(upstream, lambda e: _child_gone(child, e))
