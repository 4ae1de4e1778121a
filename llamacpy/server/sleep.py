"""--sleep-idle-seconds, as llama-server: after that long without work the engine releases the model (engine/loop.py);
the read-only routes (/health, /props, /models, /metrics) answer from what the server keeps, without waking it,
and any other request waits until the model is loaded again."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from ..engine.loop import ModelThread

READ_ONLY = {"/health", "/v1/health", "/props", "/models", "/v1/models", "/metrics"}  # GET


class WakeOnRequest:
    def __init__(self, app: ASGIApp, engine: ModelThread):
        self.app, self.engine = app, engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.engine.sleeping.is_set() and not (
                scope["method"] in ("GET", "HEAD") and scope["path"] in READ_ONLY):
            await asyncio.to_thread(self.engine.wake)
        await self.app(scope, receive, send)
