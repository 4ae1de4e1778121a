"""Google Cloud Vertex AI's custom-container contract, as llama-server has it (`AIP_MODE=PREDICTION`).

With AIP_MODE=PREDICTION the server listens on AIP_HTTP_PORT (default 8080), answers health on
AIP_HEALTH_ROUTE too (when set), and serves POST AIP_PREDICT_ROUTE (default /predict):
`{"instances": [{"@requestFormat": "chatCompletions", ...}, ...]}` runs each instance as a request to the
route it names (llama-server's camelCase alias of a path, e.g. chatCompletions -> /v1/chat/completions,
or the path itself), concurrently, never streamed; the reply is `{"predictions": [reply or {"error"}...]}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp

from .errors import ApiError, bad_request
from .jsonio import JsonResponse

log = logging.getLogger(__name__)

MAX_INSTANCES = 128


@dataclass(frozen=True)
class GcpCompat:
    port: int
    predict_route: str
    health_route: str | None

    @classmethod
    def from_env(cls, environ) -> GcpCompat | None:
        if environ.get("AIP_MODE", "") != "PREDICTION":
            return None
        port = environ.get("AIP_HTTP_PORT") or "8080"
        return cls(int(port), _route(environ.get("AIP_PREDICT_ROUTE")) or "/predict",
                   _route(environ.get("AIP_HEALTH_ROUTE")))


def _route(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith("/") else "/" + value


def request_format(path: str) -> str:
    """llama-server's alias of a path: "/v1/chat/completions" -> "chatCompletions"."""
    s = path[3:] if path.startswith("/v1") and len(path) > 3 else path
    s = s.lstrip("/").split(":")[0].split("{")[0]
    out, cap = [], False
    for ch in s:
        if ch in "/-_":
            cap = True
        else:
            out.append(ch.upper() if cap else ch)
            cap = False
    return "".join(out)


def aliases(post_paths: Iterable[str]) -> dict[str, str]:
    """camelCase alias -> path, the first path of each alias winning (as llama-server's registration order)."""
    out: dict[str, str] = {}
    for path in post_paths:
        out.setdefault(request_format(path), path)
    return out


def predict_endpoint(app_ref: list[ASGIApp], post_paths: list[str]):
    """The predict route; `app_ref[0]` is the app (routes and exception handlers) each instance is sent to."""
    by_alias = aliases(post_paths)

    async def predict(request: Request):
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"invalid JSON: {e}") from None
        if not isinstance(data, dict):
            raise bad_request("request body must be a JSON object")
        instances = data.get("instances")
        if not isinstance(instances, list):
            raise bad_request("request body must include an array field named instances")
        if len(instances) > MAX_INSTANCES:
            raise bad_request(f"instances array exceeds maximum size of {MAX_INSTANCES}")
        headers = [(k, v) for k, v in request.headers.raw if k.lower() == b"authorization"]
        replies = await asyncio.gather(*(_one(app_ref[0], by_alias, set(post_paths), i, headers)
                                         for i in instances))
        return JsonResponse({"predictions": replies})

    return predict


def _error(message: str, status: int = 400) -> dict:
    return ApiError(status, message).body()


async def _one(app: ASGIApp, by_alias: dict[str, str], paths: set[str], instance, headers) -> object:
    if not isinstance(instance, dict):
        return _error("each instance must be a JSON object")
    fmt = instance.get("@requestFormat")
    if not isinstance(fmt, str):
        return _error("each instance must include a string @requestFormat")
    path = by_alias.get(fmt) or (fmt if fmt in paths else None)
    if path is None:
        return _error(f"no handler registered for @requestFormat: {fmt}")
    payload = {k: v for k, v in instance.items() if k != "@requestFormat"}
    if "stream" in payload:
        log.warning("ignoring client-provided stream field in instance, streaming is not supported in predict route")
        payload["stream"] = False
    try:
        body = await call(app, path, json.dumps(payload).encode(), headers)
    except Exception as e:  # noqa: BLE001 - one instance's failure is its own prediction
        return _error(str(e) or type(e).__name__, 500)
    if not body:
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body.decode(errors="replace")


async def call(app: ASGIApp, path: str, body: bytes, headers) -> bytes:
    """POST `body` to `path` of `app` in process (ASGI), and the response body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *headers],
             "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}
    sent = False
    never = asyncio.Event()

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # the caller stays connected until the reply is complete
        return {"type": "http.disconnect"}

    chunks: list[bytes] = []

    async def send(message):
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)
