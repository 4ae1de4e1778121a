"""The router's models: their status, their child servers, loading on demand, LRU unloading.

Status values are llama-server's: `unloaded`, `loading`, `loaded`; a model whose child failed to load or
died is `unloaded` with `failed: true` and its `exit_code`, and the next request for it starts a fresh
child. At most `models_max` children run; before starting another, the least recently used loaded model
is unloaded (a model still loading is never evicted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx

from ..server.errors import ApiError
from .child import Child, ChildFailed
from .sources import ModelSource

log = logging.getLogger("llamacpy.router")

UNLOADED, LOADING, LOADED = "unloaded", "loading", "loaded"
MERGED_INFO = ("meta",)  # the child's /v1/models fields the router shows for a loaded model
EVENTS_QUEUED = 1000  # status events a /models/sse reader may lag behind before it is dropped


@dataclass
class Model:
    source: ModelSource
    status: str = UNLOADED
    child: Child | None = None
    ready: asyncio.Future | None = None  # the loading child's outcome: the Child, or ChildFailed
    failed: bool = False
    exit_code: int | None = None
    last_used: float = 0.0
    aliases: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # the loaded child's /v1/models entry

    def describe(self) -> dict:
        status: dict = {"value": self.status, "args": self.child.argv[3:] if self.child else []}
        if self.failed:
            status |= {"failed": True, "exit_code": self.exit_code}
        out = {"id": self.source.name, "object": "model", "owned_by": "llamacpy",
               "created": int(self.child.started_at if self.child else 0), "path": self.source.model,
               "origin": self.source.origin, "status": status}
        if self.source.aliases:
            out["aliases"] = list(self.source.aliases)
        if self.status == LOADED:  # what only the child knows (llama-server merges it the same way)
            out |= {k: v for k, v in self.info.items() if k in MERGED_INFO}
        return out


class Registry:
    def __init__(self, sources: dict[str, ModelSource], router_flags: list[str], models_max: int,
                 client: httpx.AsyncClient):
        self.models = {name: Model(source) for name, source in sources.items()}
        self.names = {alias: name for name, s in sources.items() for alias in [name, *s.aliases]}
        self.router_flags, self.models_max, self.client = router_flags, max(1, models_max), client
        self._lock = asyncio.Lock()
        self.listeners: set[asyncio.Queue] = set()
        self._tasks: set[asyncio.Task] = set()

    def resolve(self, name: object) -> Model:
        """The model a request's "model" names (an alias resolves to its model), or a 400."""
        if not isinstance(name, str) or not name:
            raise ApiError(400, "model name is missing from the request")
        canonical = self.names.get(name)
        if canonical is None:
            raise ApiError(400, f"model '{name}' not found")
        return self.models[canonical]

    # -- status events (GET /models/sse) ----------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue:
        """A queue of every status change from now on ({"model", "status"}); `unsubscribe` when done."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=EVENTS_QUEUED)
        self.listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.listeners.discard(queue)

    def _publish(self, model: Model) -> None:
        event = {"model": model.source.name, "status": model.describe()["status"]}
        for queue in list(self.listeners):
            if queue.full():  # a reader that stopped reading: it gets no more
                self.listeners.discard(queue)
            else:
                queue.put_nowait(event)

    def running(self) -> list[Model]:
        return [m for m in self.models.values() if m.status != UNLOADED]

    # -- loading -------------------------------------------------------------------------------------------

    async def load(self, model: Model) -> asyncio.Future:
        """Start the model's child unless it runs already; the future of its readiness."""
        async with self._lock:
            if model.status != UNLOADED:
                assert model.ready is not None
                return model.ready
            while len(self.running()) >= self.models_max:
                loaded = [m for m in self.running() if m.status == LOADED]
                if not loaded:
                    raise ApiError(503, "model limit reached, try again later")
                victim = min(loaded, key=lambda m: m.last_used)
                log.info("unloading %s (least recently used) to make room for %s", victim.source.name,
                         model.source.name)
                await self._stop(victim)
            child = Child(model.source, self.router_flags, self._child_exited)
            model.child, model.status, model.failed, model.exit_code = child, LOADING, False, None
            self._publish(model)
            model.ready = asyncio.get_running_loop().create_future()
            model.ready.add_done_callback(lambda f: f.exception())  # nobody waiting is fine
            model.last_used = time.monotonic()
            try:
                await child.start()
            except OSError as e:  # could not even start the process
                model.status, model.failed = UNLOADED, True
                self._publish(model)
                model.ready.set_exception(ChildFailed(f"model '{model.source.name}' could not start: {e}"))
                return model.ready
            task = asyncio.get_running_loop().create_task(self._bring_up(model, child))
            self._tasks.add(task)  # held: the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)
            return model.ready

    async def _bring_up(self, model: Model, child: Child) -> None:
        t0 = time.perf_counter()
        try:
            await child.wait_ready(self.client)
        except ChildFailed as e:
            if model.ready is not None and not model.ready.done():
                model.ready.set_exception(e)
            return
        info = await child.model_info(self.client)
        if model.child is child and model.status == LOADING:
            model.status, model.info = LOADED, info
            self._publish(model)
            log.info("model %s loaded in %.1f s (port %d)", model.source.name, time.perf_counter() - t0, child.port)
            model.ready.set_result(child)

    async def ready_child(self, model: Model, autoload: bool, cancelled: asyncio.Event | None = None) -> Child:
        """The model's child once it is ready, loading it if allowed; `cancelled` set meanwhile gives a 400."""
        if model.status == UNLOADED and not autoload:
            raise ApiError(400, "model is not loaded")
        ready = await self.load(model)
        if cancelled is not None and not ready.done():
            cancel_wait = asyncio.ensure_future(cancelled.wait())
            try:
                await asyncio.wait([ready, cancel_wait], return_when=asyncio.FIRST_COMPLETED)
            finally:
                cancel_wait.cancel()
            if not ready.done():
                raise ApiError(400, "the request was cancelled while its model was loading")
        try:
            child = await asyncio.shield(ready)
        except ChildFailed as e:
            raise ApiError(500, str(e)) from None
        model.last_used = time.monotonic()
        return child

    # -- stopping --------------------------------------------------------------------------------------------

    async def unload(self, model: Model) -> None:
        async with self._lock:
            if model.status == UNLOADED:
                raise ApiError(400, f"model '{model.source.name}' is not running")
            await self._stop(model)

    async def _stop(self, model: Model) -> None:
        child = model.child
        model.status = UNLOADED
        self._publish(model)
        if model.ready is not None and not model.ready.done():
            model.ready.set_exception(ChildFailed(f"model '{model.source.name}' was unloaded while loading"))
        if child is not None:
            await child.stop()

    def _child_exited(self, child: Child, code: int) -> None:
        model = self.models[child.name]
        if model.child is not child:
            return
        if not child.stopping:  # a crash, a kill, or a failed load
            model.failed, model.exit_code = True, code
        model.status = UNLOADED
        self._publish(model)
        if model.ready is not None and not model.ready.done():
            model.ready.set_exception(child.failure())

    async def stop_all(self) -> None:
        await asyncio.gather(*(self._stop(m) for m in self.running()), return_exceptions=True)

    async def reload(self, sources: dict[str, ModelSource]) -> None:
        """Take a fresh scan of the sources: models gone or changed are unloaded (and gone ones dropped), new
        ones added; models that did not change keep running."""
        async with self._lock:
            for name, model in list(self.models.items()):
                new = sources.get(name)
                if new != model.source:
                    if model.status != UNLOADED:
                        log.info("unloading %s: %s", name, "removed" if new is None else "changed")
                        await self._stop(model)
                    if new is None:
                        del self.models[name]
                    else:
                        model.source = new
            for name, source in sources.items():
                self.models.setdefault(name, Model(source))
            self.names = {alias: name for name, s in sources.items() for alias in [name, *s.aliases]}

    def by_child_port(self) -> dict[int, Model]:
        return {m.child.port: m for m in self.models.values() if m.status == LOADED and m.child and m.child.port}
