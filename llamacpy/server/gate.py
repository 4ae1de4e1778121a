"""The gate in front of the routes, in llama-server's order: CORS pre-flight, readiness (503 while loading),
API keys (401; public routes exempt).

A server started by a router (`router_secret`) answers only requests carrying that secret, whatever the
path: another local user cannot reach a model past the router's API key by finding the child's port.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .anthropic import AnthropicError
from .errors import BAD_API_KEY, LOADING, ApiError

ROUTER_SECRET_HEADER = "x-llamacpy-router-secret"
NOT_THE_ROUTER = ApiError(401, "this server answers only the router that started it", "authentication_error")


@dataclass(frozen=True)
class Cors:
    """llama-server's --cors-origins / --cors-methods / --cors-headers / --cors-credentials."""

    origins: str = "*"
    methods: str = "GET, POST, DELETE, OPTIONS"
    headers: str = "*"
    credentials: bool = True

    def allow_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin of a request from `origin` (None: the header is left out)."""
        if self.credentials and self.origins == "*":
            return origin or "*"  # as llama-server: the Origin echoed, so credentials work from anywhere
        if self.origins == "localhost":
            return origin if origin and _is_localhost(origin) else None
        allowed = [o.strip() for o in self.origins.split(",") if o.strip()]
        if len(allowed) == 1:
            return allowed[0]
        # several: llama-server sends the list as it is (which browsers refuse); the one matching is sent here
        return origin if origin in allowed else None

    def headers_for(self, origin: str, preflight: bool) -> list[tuple[bytes, bytes]]:
        """The CORS headers of a response, in llama-server's casing (h11 keeps it)."""
        allow = self.allow_origin(origin)
        out = [] if allow is None else [(b"Access-Control-Allow-Origin", allow.encode("latin-1"))]
        if preflight:
            out += [(b"Access-Control-Allow-Credentials", b"true" if self.credentials else b"false"),
                    (b"Access-Control-Allow-Methods", self.methods.encode("latin-1")),
                    (b"Access-Control-Allow-Headers", self.headers.encode("latin-1"))]
        elif allow is not None and self.credentials:
            out.append((b"Access-Control-Allow-Credentials", b"true"))
        return out


def _is_localhost(origin: str) -> bool:
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        return False
    return host in ("localhost", "127.0.0.1", "::1")


class Gate:
    def __init__(self, app: ASGIApp, *, api_keys: list[str], ready: Callable[[], bool],
                 public_paths: Collection[str], router_secret: str | None = None, cors: Cors = Cors()):
        self.app, self.api_keys, self.ready, self.public_paths = app, api_keys, ready, public_paths
        self.router_secret, self.cors = router_secret, cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.router_secret is not None and not _same(headers.get(ROUTER_SECRET_HEADER, ""), self.router_secret):
            return await NOT_THE_ROUTER.response()(scope, receive, send)
        origin = headers.get("origin", "")
        if scope["method"] == "OPTIONS":  # pre-flight: no key asked (browsers send none)
            preflight = self.cors.headers_for(origin, preflight=True)
            return await Response(status_code=200, headers=None)(scope, receive, with_headers(send, preflight))
        cors = self.cors.headers_for(origin, preflight=False)
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
