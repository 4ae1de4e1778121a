"""The gate in front of the routes, in llama-server's order: CORS pre-flight, readiness (503 while loading),
API keys (401; public routes exempt).

A server started by a router (`router_secret`) answers only requests carrying that secret, whatever the
path: another local user cannot reach a model past the router's API key by finding the child's port.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .anthropic import AnthropicError
from .errors import BAD_API_KEY, LOADING, ApiError

ROUTER_SECRET_HEADER = "x-llamacpy-router-secret"
NOT_THE_ROUTER = ApiError(401, "this server answers only the router that started it", "authentication_error")


class Gate:
    def __init__(self, app: ASGIApp, *, api_keys: list[str], ready: Callable[[], bool],
                 public_paths: Collection[str], router_secret: str | None = None):
        self.app, self.api_keys, self.ready, self.public_paths = app, api_keys, ready, public_paths
        self.router_secret = router_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.router_secret is not None and not _same(headers.get(ROUTER_SECRET_HEADER, ""), self.router_secret):
            return await NOT_THE_ROUTER.response()(scope, receive, send)
        cors = [(b"access-control-allow-origin", headers.get("origin", "*").encode("latin-1")),
                (b"access-control-allow-credentials", b"true")]
        if scope["method"] == "OPTIONS":
            allow = [(b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
                     (b"access-control-allow-headers", b"*")]
            return await Response(status_code=200, headers=None)(scope, receive, with_headers(send, cors + allow))
        path = scope["path"]
        if not self.ready() and path != "/":
            return await _shaped(LOADING, path).response()(scope, receive, with_headers(send, cors))
        if self.api_keys and path not in self.public_paths and not self._key_ok(headers):
            return await _shaped(BAD_API_KEY, path).response()(scope, receive, with_headers(send, cors))
        await self.app(scope, receive, with_headers(send, cors))

    def _key_ok(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key") or headers.get("authorization", "")
        if given[:7].lower() == "bearer ":
            given = given[7:]
        return any(_same(given.strip(), k) for k in self.api_keys)


def _shaped(error: ApiError, path: str) -> ApiError:
    """Anthropic's clients read errors in Anthropic's shape on its routes."""
    return AnthropicError.of(error) if path.startswith("/v1/messages") else error


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": list(message.get("headers", [])) + extra}
        await send(message)
    return wrapped
