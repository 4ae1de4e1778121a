"""llama-server's error bodies: {"error": {"code": <status>, "message": ..., "type": ...}}."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .jsonio import JsonResponse

log = logging.getLogger("llamacpy.server")

TYPE_OF_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


class ApiError(Exception):
    """An error answered to the client; `extra` fields join the error object (e.g. n_ctx)."""

    def __init__(self, status: int, message: str, type: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message = status, message
        self.type = type or TYPE_OF_STATUS.get(status, "server_error")
        self.extra = extra

    def body(self) -> dict:
        return {"error": {"code": self.status, "message": self.message, "type": self.type, **self.extra}}

    def response(self) -> JsonResponse:
        return JsonResponse(self.body(), status_code=self.status)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


NOT_FOUND = ApiError(404, "File Not Found")
LOADING = ApiError(503, "Loading model")
BAD_API_KEY = ApiError(401, "Invalid API Key")


def media_unsupported(kind: str) -> ApiError:
    """llama-server's answer (a 500) to an image / audio / video part for a model without a projector."""
    return ApiError(500, f"{kind} input is not supported - hint: if this is unexpected, you may need to provide "
                         "the mmproj")


def exceeds_context(n_prompt: int, n_ctx: int, message: str = "") -> ApiError:
    message = message or (f"request ({n_prompt} tokens) exceeds the available context size ({n_ctx} tokens), "
                          "try increasing it")
    return ApiError(400, message, "exceed_context_size_error", n_prompt_tokens=n_prompt, n_ctx=n_ctx)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: HTTPException) -> Response:
    # llama-server answers an unknown method on a known path like an unknown path
    return NOT_FOUND.response() if exc.status_code in (404, 405) else ApiError(exc.status_code, exc.detail).response()


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("error in %s %s", request.method, request.url.path)
    return ApiError(500, f"{type(exc).__name__}: {exc}").response()


EXCEPTION_HANDLERS = {ApiError: _api_error, HTTPException: _http_error, Exception: _server_error}
