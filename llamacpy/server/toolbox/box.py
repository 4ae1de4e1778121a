"""The toolbox of a server: the enabled tools, set up at start, and the /tools routes."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import StreamingResponse

from ..errors import ApiError
from ..jsonio import JsonResponse
from ..params import parse_json, read_body
from ..settings import ServerSettings
from .builtin import BUILTIN, ParamError, Tool
from .mcp import McpServers, ToolDef
from .runtime import FixedRuntime, OwnedContainer, RuntimeSpecError, tools_runtime

log = logging.getLogger("llamacpy.server")

DISABLED = ApiError(403, "this feature is disabled", "feature_disabled")
MAX_BODY = 16 << 20
ALL = "all"
FROM_HEADERS = ("cwd", "runtime", "resp_type")  # params only the request's headers set, never the model


def _mcp_tool(d: ToolDef, servers: McpServers) -> Tool:
    def invoke(params: dict, _stream=None) -> dict:
        args = {k: v for k, v in params.items() if k not in FROM_HEADERS}
        return servers.call(d.server, d.name, args, lambda: False)

    return Tool(f"{d.server}_{d.name}", f"{d.server}_{d.name}", d.description, {}, (), invoke, uses_cwd=False,
                kind="mcp", schema=d.input_schema)


class Toolbox:
    """The tools a server offers; empty (both routes 403) unless --tools or MCP servers are set."""

    def __init__(self, tools: list[Tool], mcp: McpServers | None = None,
                 runtime: FixedRuntime | OwnedContainer | None = None):
        self.tools = {t.name: t for t in tools}
        self.mcp, self.runtime = mcp, runtime

    @classmethod
    def start(cls, settings: ServerSettings) -> Toolbox:
        """Check the settings, spawn the --tools-runtime container, list the MCP servers' tools. ValueError for a
        bad setting (the server does not start)."""
        enabled, runtime = settings.enabled_tools, settings.tools_runtime
        known = [t.name for t in BUILTIN]
        for name in enabled:
            if name != ALL and name not in known:
                raise ValueError(f'unknown tool "{name}". available tools: {", ".join(known)}')
        tools = [t for t in BUILTIN if ALL in enabled or t.name in enabled]
        mcp = McpServers.from_settings(settings.mcp_servers_config, settings.mcp_servers_json)
        if mcp:
            mcp.warmup()
            n_builtin, seen = len(tools), {t.name for t in tools}
            for d in mcp.tools:
                tool = _mcp_tool(d, mcp)
                if tool.name in seen:
                    log.warning('MCP tool "%s" from server "%s" collides with an existing tool, skipping', tool.name,
                                d.server)
                    continue
                seen.add(tool.name)
                tools.append(tool)
            log.info("MCP: %d tools from %d servers", len(tools) - n_builtin, len(mcp.configs))
        try:
            owned = tools_runtime(runtime) if runtime else None
        except RuntimeSpecError as e:
            raise ValueError(str(e)) from None
        box = cls(tools, mcp, owned)
        if box.enabled:
            log.warning("experimental: tools for agents enabled (%s) - do not enable in untrusted environments",
                        ", ".join(box.tools))
        return box

    @property
    def enabled(self) -> bool:
        return bool(self.tools) or bool(self.mcp)

    def close(self) -> None:
        """At shutdown: calls to MCP servers in flight answer "cancelled", the servers and the owned container
        stop."""
        if self.mcp is not None:
            self.mcp.close()
        if self.runtime is not None:
            self.runtime.close()

    def find(self, name: str, stream: bool) -> Tool:
        tool = self.tools.get(name)
        if tool is None:
            raise ApiError(404, f'unknown tool "{name}"', "invalid_request_error")
        if stream and not tool.stream:
            raise ApiError(404, f'tool "{name}" does not support stream = true', "invalid_request_error")
        return tool

    def call_params(self, request: Request, params: dict) -> dict:
        """The params with cwd / runtime / resp_type from the headers only (a model's own are dropped)."""
        params = {k: v for k, v in params.items() if k not in FROM_HEADERS}
        headers = request.headers
        if headers.get("x-tool-cwd"):
            params["cwd"] = headers["x-tool-cwd"]
        if headers.get("x-tool-runtime"):
            params["runtime"] = headers["x-tool-runtime"]
        elif self.runtime is not None:
            params["runtime"] = self.runtime.spec()
        if headers.get("x-resp-type"):
            params["resp_type"] = headers["x-resp-type"]
        return params


def _box(request: Request) -> Toolbox:
    box = getattr(request.app.state, "toolbox", None)
    if box is None or not box.enabled:
        raise DISABLED
    return box


async def tools_get(request: Request):
    box = _box(request)
    return JsonResponse([t.to_json() for t in box.tools.values()])


def _invoke(tool: Tool, params: dict, stream=None) -> dict:
    try:
        return tool.invoke(params, stream)
    except ParamError as e:
        raise ApiError(400, str(e)) from None
    except RuntimeSpecError as e:
        raise ApiError(500, str(e)) from None


async def tools_post(request: Request):
    box = _box(request)
    body = parse_json(await read_body(request, MAX_BODY))
    if not isinstance(body, dict) or not isinstance(body.get("tool"), str):
        raise ApiError(400, 'the body needs a "tool" name')
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(400, '"params" must be an object')
    stream = body.get("stream") is True
    tool = box.find(body["tool"], stream)
    params = box.call_params(request, params)
    if not stream:
        return JsonResponse(await anyio.to_thread.run_sync(_invoke, tool, params))
    return StreamingResponse(_stream(tool, params), media_type="text/event-stream")


async def _stream(tool: Tool, params: dict):
    """The tool runs in a thread, its chunks come through a queue; a client gone stops it."""
    loop, frames = asyncio.get_running_loop(), asyncio.Queue()
    gone = threading.Event()

    def push(chunk: str) -> bool:
        if chunk:
            loop.call_soon_threadsafe(frames.put_nowait, {"chunk": chunk})
        return not gone.is_set()

    def work() -> None:
        done: dict = {"done": True}
        try:
            _invoke(tool, params, push)
        except ApiError as e:
            done["error"] = e.message
        except Exception as e:
            log.exception("tool %s failed", tool.name)
            done["error"] = str(e) or "An unknown error occurred"
        loop.call_soon_threadsafe(frames.put_nowait, done)

    worker = threading.Thread(target=work, daemon=True, name=f"tool-{tool.name}")
    worker.start()
    try:
        while True:
            frame = await frames.get()
            yield f"data: {json.dumps(frame, ensure_ascii=False, separators=(',', ':'))}\n\n"
            if frame.get("done"):
                return
    finally:
        gone.set()
