"""GET/POST /cors-proxy?url=...: llama-server's CORS proxy for the web UI's MCP clients (`--ui-mcp-proxy`,
experimental, off by default: 403). The request goes to `url` (http or https, no credentials in it) with only the
headers the client sent as `x-llama-server-proxy-header-<name>`; the answer comes back streamed, with our CORS
headers."""

from __future__ import annotations

import httpx
from starlette.requests import Request

from .errors import ApiError
from .params import read_body
from .relay import RelayedResponse

PREFIX = "x-llama-server-proxy-header-"
NOT_PASSED = {"accept-encoding", "transfer-encoding", "content-length"}
TIMEOUT = 600.0  # seconds, as llama-server
MAX_BODY = 16 << 20


def _target(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise ApiError(500, f"invalid target URL: {e}") from None
    if not target.host:
        raise ApiError(500, "invalid target URL: missing host")
    if target.password:
        raise ApiError(500, "authentication in target URL is not supported")
    if target.scheme not in ("http", "https"):
        raise ApiError(500, f"unsupported URL scheme in target URL: {target.scheme}")
    return target


def _client(request: Request) -> httpx.AsyncClient:
    state = request.app.state
    if getattr(state, "cors_proxy_client", None) is None:
        state.cors_proxy_client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True)
    return state.cors_proxy_client


async def cors_proxy(request: Request):
    if not getattr(request.app.state, "cors_proxy", False):
        raise ApiError(403, "this feature is disabled", "feature_disabled")
    target = _target(request.query_params.get("url", ""))
    headers = [(k[len(PREFIX):], v) for k, v in request.headers.items()
               if k.startswith(PREFIX) and k[len(PREFIX):] and k[len(PREFIX):] not in NOT_PASSED]
    body = await read_body(request, MAX_BODY) if request.method == "POST" else None
    client = _client(request)
    try:
        upstream = await client.send(client.build_request(request.method, target, headers=headers, content=body),
                                     stream=True)
    except httpx.HTTPError as e:
        raise ApiError(500, f"proxy request to {target.host} failed: {e}") from None
    return RelayedResponse(upstream, lambda e: ApiError(502, f"proxy: {target.host} stopped answering ({e})"))
