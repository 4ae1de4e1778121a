"""The router's HTTP application: one route table. Model routes are proxied to the child serving the model
the request names; the router answers /health, /props, the model list, load/unload and the resumable
stream routes itself (spec section 4 and 1.11).

Resumable streams: a POST carrying `X-Conversation-Id` records which model owns that id (`owners`, exact
id as sent, `::model` suffix and all). GET and DELETE of a stream go to the owner's child; lookup fans out
to the owning children with a short timeout and merges their answers. While the owner is still loading,
a GET answers 503 (retry) and a DELETE cancels the parked POST (which answers 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from urllib.parse import quote, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from .. import __version__
from ..server.cors_proxy import cors_proxy
from ..server.errors import EXCEPTION_HANDLERS, LOADING, ApiError
from ..server.gate import Gate
from ..server.jsonio import JsonResponse
from ..server.params import parse_json, read_body
from ..server.settings import ServerSettings
from ..server.stream_routes import HEADER as CONVERSATION_HEADER
from ..server.stream_routes import MISSING_ID
from ..server.stream_routes import NOT_FOUND as STREAM_NOT_FOUND
from ..server.toolbox import Toolbox, tools_get, tools_post
from ..ui import WebUI
from .proxy import forward
from .registry import LOADED, Model, Registry
from .registry import LOADING as STATUS_LOADING
from .sources import ModelSource

log = logging.getLogger("llamacpy.router")

PUBLIC_PATHS = {"/", "/health", "/v1/health", "/models", "/v1/models"}
MAX_OWNERS = 100_000  # conversation ids remembered (a stream's owner); DELETE forgets one
EVENTS_PING_SECONDS = 15.0  # /models/sse keep-alive
STREAM_LOOKUP_TIMEOUT = 0.25  # seconds, router -> child JSON calls of the stream routes (llama-server's)


class RouterState:
    def __init__(self, settings: ServerSettings, registry: Registry, client: httpx.AsyncClient,
                 scan: Callable[[], dict[str, ModelSource]], toolbox: Toolbox | None = None):
        self.settings, self.registry, self.client, self.scan = settings, registry, client, scan
        self.toolbox = toolbox  # /tools: the router's own (its children get no tool flags)
        self.owners: OrderedDict[str, str] = OrderedDict()  # conversation id -> model name, newest last
        self.parked: dict[str, asyncio.Event] = {}  # conversation id -> cancel, while its model loads
        self.stopping = asyncio.Event()  # set at shutdown: /models/sse feeds end


def _state(request: Request) -> RouterState:
    return request.app.state.router


async def _read_body(request: Request) -> bytes:
    return await read_body(request, _state(request).settings.max_body_bytes)


def _autoload(request: Request) -> bool:
    value = request.query_params.get("autoload")
    return _state(request).settings.models_autoload if value is None else value.lower() in ("1", "true")


# -- proxied routes ------------------------------------------------------------------------------------------

async def proxy_post(request: Request):
    """A model route: to the child of the body's "model" (loaded first if need be)."""
    st = _state(request)
    raw = await _read_body(request)
    body = parse_json(raw, (dict, list)) if raw.strip() else {}  # /lora-adapters: an array; slot erase: nothing
    name = body.get("model") if isinstance(body, dict) else None
    model = st.registry.resolve(name or request.query_params.get("model"))
    cid = request.headers.get(CONVERSATION_HEADER, "")
    cancelled = None
    if cid:
        st.owners[cid] = model.source.name
        st.owners.move_to_end(cid)
        if len(st.owners) > MAX_OWNERS:  # best effort, as llama-server's map: the oldest ids are forgotten
            st.owners.popitem(last=False)
        if model.status != LOADED:
            cancelled = st.parked[cid] = asyncio.Event()
    try:
        child = await st.registry.ready_child(model, _autoload(request), cancelled)
    finally:
        if cid and st.parked.get(cid) is cancelled:
            st.parked.pop(cid, None)
    return await forward(st.client, child, "POST", request.url.path, request.url.query,
                         request.headers.raw, raw)


async def proxy_get(request: Request):
    """A model's GET route (/props, /slots, /metrics with `?model=`)."""
    st = _state(request)
    model = st.registry.resolve(request.query_params.get("model"))
    child = await st.registry.ready_child(model, _autoload(request))
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in ("model", "autoload")])
    return await forward(st.client, child, "GET", request.url.path, query, request.headers.raw)


# -- the router's own --------------------------------------------------------------------------------------------

async def health(request: Request):
    return JsonResponse({"status": "ok"})


async def props(request: Request):
    if request.query_params.get("model"):
        return await proxy_get(request)
    s = _state(request).settings
    return JsonResponse({
        "role": "router", "max_instances": s.models_max, "models_autoload": s.models_autoload,
        "model_alias": "llamacpy", "model_path": "none", "default_generation_settings": {"params": {}, "n_ctx": 0},
        "ui_settings": {}, "build_info": f"llamacpy {__version__}", "cors_proxy_enabled": False,
    })


async def models(request: Request):
    st = _state(request)
    if request.query_params.get("reload") in ("1", "true"):  # rescan the folder, catalog and preset
        try:
            sources = await asyncio.to_thread(st.scan)
        except (OSError, ValueError) as e:
            raise ApiError(400, f"could not rescan the models: {e}") from None
        await st.registry.reload(sources)
    data = [m.describe() for m in st.registry.models.values()]
    return JsonResponse({"object": "list", "data": data})


async def models_events(request: Request):
    """GET /models/sse: `event: model_status` with {"model", "status"} at every status change, after one
    such event per model for the current state; keep-alive comments meanwhile."""
    registry = _state(request).registry
    queue = registry.subscribe()

    def frame(event: dict) -> bytes:
        return f"event: model_status\ndata: {json.dumps(event)}\n\n".encode()

    async def events():
        try:
            for m in list(registry.models.values()):
                yield frame({"model": m.source.name, "status": m.describe()["status"]})
            stopping = asyncio.ensure_future(_state(request).stopping.wait())
            try:
                while not stopping.done():
                    get = asyncio.ensure_future(queue.get())
                    await asyncio.wait([get, stopping], timeout=EVENTS_PING_SECONDS,
                                       return_when=asyncio.FIRST_COMPLETED)
                    if get.done():
                        yield frame(get.result())
                    else:
                        get.cancel()
                        if not stopping.done():
                            yield b": ping\n\n"
            finally:
                stopping.cancel()
        finally:
            registry.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _named_model(request: Request) -> Model:
    body = parse_json(await _read_body(request))
    name = body.get("model") if isinstance(body, dict) else None
    try:
        return _state(request).registry.resolve(name)
    except ApiError as e:
        raise ApiError(404, "model is not found") if name else e from None


async def models_load(request: Request):
    st = _state(request)
    model = await _named_model(request)
    if model.status != "unloaded":
        raise ApiError(400, f"model '{model.source.name}' is already {model.status}")
    await st.registry.load(model)
    return JsonResponse({"success": True})


async def models_unload(request: Request):
    await _state(request).registry.unload(await _named_model(request))
    return JsonResponse({"success": True})


# -- resumable streams -------------------------------------------------------------------------------------------

def _conversation_id(request: Request) -> str:
    cid = request.path_params.get("conv_id") or request.query_params.get("conv_id", "")
    if not cid:
        raise MISSING_ID
    return cid


def _owner(st: RouterState, cid: str) -> Model | None:
    name = st.owners.get(cid)
    return st.registry.models.get(name) if name else None


async def stream_get(request: Request):
    st = _state(request)
    cid = _conversation_id(request)
    owner = _owner(st, cid)
    if cid in st.parked or (owner is not None and owner.status == STATUS_LOADING):
        raise LOADING  # 503: the client retries once the model is up
    if owner is None or owner.status != LOADED:
        raise STREAM_NOT_FOUND
    query = [("conv_id", cid)] + [(k, v) for k, v in request.query_params.multi_items() if k == "from"]
    return await forward(st.client, owner.child, "GET", "/v1/stream", urlencode(query, quote_via=quote),
                         request.headers.raw)


async def stream_delete(request: Request):
    st = _state(request)
    cid = _conversation_id(request)
    if cid in st.parked:
        st.parked.pop(cid).set()  # the POST waiting for its model answers 400
    owner = _owner(st, cid)
    if owner is not None and owner.status == LOADED:
        child = owner.child
        with contextlib.suppress(httpx.HTTPError):
            await st.client.delete(f"{child.url}/v1/stream", params={"conv_id": cid}, headers=child.headers,
                                   timeout=STREAM_LOOKUP_TIMEOUT)
    else:
        log.warning("DELETE /v1/stream: no running owner for %r", cid)
    st.owners.pop(cid, None)
    return Response(status_code=204, media_type="application/json")


async def streams_lookup(request: Request):
    st = _state(request)
    try:
        ids = json.loads(await _read_body(request))["conversation_ids"]
        assert isinstance(ids, list) and all(isinstance(i, str) for i in ids)
    except (ValueError, KeyError, TypeError, AssertionError):
        return JsonResponse([])  # the router's answer to a bad body (a child answers 400)
    per_child: dict[int, list[str]] = defaultdict(list)
    children = {}
    for cid in ids:
        owner = _owner(st, cid)
        if owner is not None and owner.status == LOADED:
            per_child[owner.child.port].append(cid)
            children[owner.child.port] = owner.child

    async def ask(port: int) -> list:
        child = children[port]
        try:
            r = await st.client.post(f"{child.url}/v1/streams/lookup", json={"conversation_ids": per_child[port]},
                                     headers=child.headers, timeout=STREAM_LOOKUP_TIMEOUT)
            found = r.json() if r.status_code == 200 else []
            return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []
        except (httpx.HTTPError, ValueError):
            return []

    answers = await asyncio.gather(*(ask(port) for port in per_child))
    return JsonResponse([entry for answer in answers for entry in answer])


# -- the route table ---------------------------------------------------------------------------------------------

PROXIED_POSTS = ["/completion", "/completions", "/v1/completions", "/chat/completions", "/v1/chat/completions",
                 "/infill", "/embedding", "/embeddings", "/v1/embeddings", "/rerank", "/v1/rerank", "/reranking",
                 "/v1/reranking", "/tokenize", "/detokenize", "/apply-template", "/props",
                 "/v1/messages", "/v1/messages/count_tokens", "/responses", "/v1/responses",
                 "/chat/completions/input_tokens", "/v1/chat/completions/input_tokens", "/responses/input_tokens",
                 "/v1/responses/input_tokens"]

ROUTES = [
    ("GET", "/health", health),
    ("GET", "/v1/health", health),
    ("GET", "/props", props),
    ("GET", "/models", models),
    ("GET", "/v1/models", models),
    ("GET", "/models/sse", models_events),
    ("POST", "/models/load", models_load),
    ("POST", "/models/unload", models_unload),
    ("GET", "/slots", proxy_get),
    ("POST", "/slots/{id_slot}", proxy_post),
    ("GET", "/lora-adapters", proxy_get),
    ("POST", "/lora-adapters", proxy_post),
    ("GET", "/metrics", proxy_get),
    ("GET", "/v1/stream/{conv_id:path}", stream_get),
    ("GET", "/v1/stream", stream_get),
    ("DELETE", "/v1/stream/{conv_id:path}", stream_delete),
    ("DELETE", "/v1/stream", stream_delete),
    ("POST", "/v1/streams/lookup", streams_lookup),
    ("GET", "/tools", tools_get),
    ("POST", "/tools", tools_post),
    ("GET", "/cors-proxy", cors_proxy),
    ("POST", "/cors-proxy", cors_proxy),
    *(("POST", path, proxy_post) for path in PROXIED_POSTS),
]


def create_router_app(state: RouterState) -> ASGIApp:
    routes = [Route(path, endpoint, methods=[method]) for method, path, endpoint in ROUTES]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app.state.router = state
    app.state.toolbox, app.state.cors_proxy = state.toolbox, state.settings.cors_proxy
    gated = Gate(app, api_keys=state.settings.api_keys(), ready=lambda: True, public_paths=PUBLIC_PATHS,
                 cors=state.settings.cors())
    return WebUI(gated) if state.settings.webui else gated
