"""Running a router: uvicorn in the main thread; children started on demand (or at startup for presets
with `load-on-startup`); SIGINT/SIGTERM stop every child, then the router."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import uvicorn

from ..server.run import GRACEFUL_SECONDS, GracefulServer, configure_logging
from ..server.settings import ServerSettings
from ..server.toolbox import Toolbox
from .app import RouterState, create_router_app
from .registry import Registry
from .sources import ModelSource

log = logging.getLogger("llamacpy.router")


class _RouterServer(GracefulServer):
    def __init__(self, config: uvicorn.Config, state: RouterState):
        super().__init__(config)
        self.state = state

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        reg = self.state.registry
        log.info("router: listening on %s, %d models, at most %d loaded%s", self.address(), len(reg.models),
                 reg.models_max, " (API key required)" if self.state.settings.api_keys() else "")
        for model in reg.models.values():
            if model.source.load_on_startup:
                await reg.load(model)

    async def shutdown(self, sockets=None) -> None:
        log.info("router: stopping %d model(s)", len(self.state.registry.running()))
        if self.state.toolbox is not None:
            await asyncio.to_thread(self.state.toolbox.close)
        self.state.stopping.set()
        await self.state.registry.stop_all()
        await super().shutdown(sockets)
        await self.state.client.aclose()


def serve_router(settings: ServerSettings, scan: Callable[[], dict[str, ModelSource]], child_flags: list[str]) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code. `scan` finds the models (again on `?reload=1`)."""
    configure_logging(settings.log_level)
    sources = scan()
    if not sources:
        log.error("router: no models (--models-dir, --models-preset, --models-catalog found none)")
        return 1
    starting = [s.name for s in sources.values() if s.load_on_startup]
    if len(starting) > settings.models_max:
        log.error("router: %d models to load on startup but --models-max is %d", len(starting), settings.models_max)
        return 1
    for s in sources.values():
        log.info("router: model %s = %s%s", s.name, s.model, f" (aliases {', '.join(s.aliases)})" if s.aliases else "")
    # no pool limit: every proxied stream holds a connection for its whole life
    client = httpx.AsyncClient(timeout=httpx.Timeout(settings.timeout, connect=10.0),
                               limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
    registry = Registry(sources, child_flags, settings.models_max, client)
    toolbox = Toolbox.start(settings)
    state = RouterState(settings, registry, client, scan, toolbox)
    config = uvicorn.Config(create_router_app(state), host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="off", timeout_keep_alive=settings.timeout,
                            timeout_graceful_shutdown=GRACEFUL_SECONDS)
    server = _RouterServer(config, state)
    server.run()
    return server.exit_code or (0 if server.started else 1)

