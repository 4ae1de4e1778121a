"""The web UI: a chat page served at `/`, its files under `/ui/`, all shipped in this package (no CDN).

`WebUI` wraps the server's ASGI app. It answers GET/HEAD of `/` and `/ui/...` from `static/` before the
API's gate sees them, because the page is public (it asks for the API key itself) and must load while the
model is still loading. Every other request goes to the wrapped app.

The page is plain ES modules (no build step); vendored libraries are in `static/vendor/` (see its README).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/ui/"
INDEX_PATHS = ("/", "/index.html")

# Module scripts must come with a JavaScript type whatever the system's mimetypes tables say.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}


def is_ui_path(path: str) -> bool:
    return path in INDEX_PATHS or path.startswith(PREFIX)


def static_file(path: str) -> Path | None:
    """The file a UI path names, or None (unknown, hidden, or outside the static folder)."""
    rel = "index.html" if path in INDEX_PATHS else path[len(PREFIX):]
    if not rel or any(part.startswith(".") for part in rel.split("/")):
        return None
    file = (STATIC_DIR / rel).resolve()
    if not file.is_relative_to(STATIC_DIR) or not file.is_file() or file.suffix not in MEDIA_TYPES:
        return None
    return file


def file_response(file: Path, if_none_match: str | None) -> Response:
    """The file, revalidated on every load (`no-cache` + ETag) so an upgraded package is never stale."""
    st = file.stat()
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers = {"cache-control": "no-cache", "etag": etag}
    if if_none_match and etag in if_none_match:
        return Response(status_code=304, headers=headers)
    return FileResponse(file, headers=headers, media_type=MEDIA_TYPES[file.suffix], stat_result=st)


class WebUI:
    """ASGI wrapper serving the UI at `/` in front of `app` (see the module docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not is_ui_path(path):
            return await self.app(scope, receive, send)
        file = static_file(path)
        if file is None:
            error = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
            return await JSONResponse(error, status_code=404)(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        await file_response(file, headers.get("if-none-match"))(scope, receive, send)
