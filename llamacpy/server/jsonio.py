"""JSON out: compact UTF-8, and never an exception for text that cannot be encoded (a lone surrogate
from a client's "\\ud800" comes back as "?" instead of failing the response)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_bytes(content)
