"""MCP servers' tools (`--mcp-servers-config FILE`, `--mcp-servers-json JSON`, Cursor's `{"mcpServers": {...}}`
format), as llama-server's server-mcp.cpp: each server is a child process speaking JSON-RPC 2.0 as one JSON
object per line on its stdin/stdout (MCP's stdio transport, protocol 2024-11-05).

At start every server is spawned once to list its tools (at most WARMUP_SECONDS each), then stopped; a tool call
spawns its server again on demand and keeps it for the next calls, respawning it when it has died (after a failed
start it waits COOLDOWN_SECONDS before trying again). Calls to one server are serialized; replies are matched to
requests by id, so notifications and late answers to timed-out calls are skipped. Each call has the server's
`timeout_ms` (default 30000). Stopping kills each server's whole process group: whatever it spawned cannot keep
the pipes open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("llamacpy.server")

PROTOCOL_VERSION = "2024-11-05"
WARMUP_SECONDS = 10
COOLDOWN_SECONDS = 5
MAX_LINE = 8 << 20  # bytes: a longer line from a server is dropped
ERR_TAIL = 4096  # bytes of a server's stderr kept for its diagnostics


@dataclass
class ServerConfig:
    name: str
    command: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    timeout_ms: int = 30000


@dataclass
class ToolDef:
    server: str
    name: str
    description: str
    input_schema: dict


def parse_config(text: str) -> list[ServerConfig]:
    """The servers of a config; ValueError for text that is not JSON. Entries without a command are skipped."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"failed to parse MCP config JSON: {e}") from None
    servers = doc.get("mcpServers") if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        return []
    out = []
    for name, cfg in servers.items():
        cfg = cfg if isinstance(cfg, dict) else {}
        command = cfg.get("command")
        if not isinstance(command, str) or not command:
            log.warning("MCP server '%s' has no command, skipping", name)
            continue
        args = [str(a) for a in cfg.get("args", [])] if isinstance(cfg.get("args"), list) else []
        env = {str(k): str(v) for k, v in cfg["env"].items()} if isinstance(cfg.get("env"), dict) else {}
        timeout = cfg.get("timeout_ms", 30000)
        out.append(ServerConfig(name, command, args, env, str(cfg.get("cwd") or ""),
                                timeout if isinstance(timeout, int) and timeout > 0 else 30000))
    return out


def _error(message: str) -> dict:
    return {"error": {"code": -32603, "message": message}}


def _rpc_message(reply: dict) -> str:
    e = reply.get("error")
    if isinstance(e, dict):
        return str(e.get("message", "unknown error"))
    return e if isinstance(e, str) else "unknown error"


def _result_to_response(result: dict) -> dict:
    """A tools/call result as /tools answers it: its text parts joined, or its error."""
    parts = result.get("content") if isinstance(result, dict) else None
    texts = [p.get("text", "") for p in parts or [] if isinstance(p, dict) and p.get("type") == "text"]
    text = "\n".join(texts)
    if isinstance(result, dict) and result.get("isError"):
        return {"error": text or "MCP tool returned an error"}
    return {"plain_text_response": text}


class StdioServer:
    """One running MCP server process and its JSON-RPC session."""

    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.running = threading.Event()
        self.lock = threading.Lock()  # one call at a time
        self.next_id = 1
        self.initialized = False
        self.tools: list[ToolDef] | None = None
        self.err_tail: deque[str] = deque()
        self.last_error = ""
        self.threads: list[threading.Thread] = []

    def start(self) -> bool:
        try:
            self.proc = subprocess.Popen([self.cfg.command, *self.cfg.args], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env={**os.environ, **self.cfg.env}, cwd=self.cfg.cwd or None,
                                         start_new_session=True)
        except OSError as e:
            self.last_error = f"failed to spawn: {e}"
            return False
        self.running.set()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self._on_line, True),
                                         daemon=True,
                                         name=f"mcp-{self.cfg.name}-out"),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, self._on_err, False),
                                         daemon=True,
                                         name=f"mcp-{self.cfg.name}-err")]
        for t in self.threads:
            t.start()
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.running.is_set()

    def diagnostics(self) -> str:
        out = self.last_error or "not running"
        if self.proc is not None and self.proc.poll() is not None:
            out += f"; exit code {self.proc.returncode}"
        tail = "".join(self.err_tail).strip()
        return f"{out}; last stderr: {tail}" if tail else out

    # -- the pipes -------------------------------------------------------------------------------------------

    def _pump(self, pipe, on_line: Callable[[str], None], is_stdout: bool) -> None:
        """Read lines until EOF or close(): polled, so a grandchild holding the pipe open cannot hang it."""
        fd, buf, skipping = pipe.fileno(), b"", False
        try:
            while self.running.is_set():
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                if skipping:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        buf = b"" if len(buf) > MAX_LINE else buf
                        continue
                    buf, skipping = buf[nl + 1:], False
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    text = line.rstrip(b"\r").decode("utf-8", "replace")
                    if text:
                        on_line(text)
                if len(buf) > MAX_LINE:
                    log.warning("MCP '%s': dropping an oversized line (> %d bytes)", self.cfg.name, MAX_LINE)
                    buf, skipping = b"", True
        except (OSError, ValueError):
            pass
        if is_stdout:
            self.running.clear()
            self.lines.put(None)  # wakes a caller waiting for a reply

    def _on_line(self, line: str) -> None:
        self.lines.put(line)

    def _on_err(self, line: str) -> None:
        log.debug("MCP '%s' stderr: %s", self.cfg.name, line)
        self.err_tail.append(line + "\n")
        while sum(map(len, self.err_tail)) > ERR_TAIL and len(self.err_tail) > 1:
            self.err_tail.popleft()

    def _write(self, msg: dict) -> bool:
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    # -- JSON-RPC --------------------------------------------------------------------------------------------

    def rpc(self, method: str, params: dict | None, should_stop: Callable[[], bool]) -> dict:
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            req["params"] = params
        if not self._write(req):
            return _error("transport closed")
        deadline = time.monotonic() + self.cfg.timeout_ms / 1000
        while True:
            if should_stop():
                return _error("cancelled")
            left = deadline - time.monotonic()
            if left <= 0:
                return _error("request timed out")
            try:
                line = self.lines.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)  # stays closed for the next caller
                return _error("transport closed")
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue  # a malformed frame
            if isinstance(reply, dict) and reply.get("id") == req["id"]:
                return reply

    def _ensure_init(self, should_stop: Callable[[], bool]) -> bool:
        if self.initialized:
            return True
        reply = self.rpc("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                        "clientInfo": {"name": "llamacpy", "version": "1.0"}}, should_stop)
        if "result" not in reply:
            self.last_error = f"initialize failed: {_rpc_message(reply)}"
            return False
        self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.initialized = True
        return True

    def list_tools(self, should_stop: Callable[[], bool]) -> list[ToolDef]:
        with self.lock:
            if not self._ensure_init(should_stop):
                return []
            if self.tools is None:
                reply = self.rpc("tools/list", None, should_stop)
                if "result" not in reply:
                    self.last_error = f"tools/list failed: {_rpc_message(reply)}"
                    return []
                listed = reply["result"].get("tools") if isinstance(reply["result"], dict) else None
                self.tools = [ToolDef(self.cfg.name, str(t.get("name", "")), str(t.get("description", "")),
                                      t.get("inputSchema") if isinstance(t.get("inputSchema"), dict) else {})
                              for t in listed or [] if isinstance(t, dict)]
            return self.tools

    def call_tool(self, name: str, arguments: dict, should_stop: Callable[[], bool]) -> dict:
        with self.lock:
            if not self._ensure_init(should_stop):
                return {"error": self.last_error}
            reply = self.rpc("tools/call", {"name": name, "arguments": arguments}, should_stop)
        if "error" in reply:
            return {"error": _rpc_message(reply)}
        if "result" in reply:
            return _result_to_response(reply["result"])
        return {"error": "invalid response from MCP server"}

    def close(self) -> None:
        self.running.clear()
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        for t in self.threads:
            t.join(timeout=1)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()


class McpServers:
    """The configured MCP servers: their tools (found at start) and calls to them."""

    def __init__(self, configs: list[ServerConfig]):
        self.configs = {c.name: c for c in configs}
        self.tools: list[ToolDef] = []
        self.running: dict[str, StdioServer] = {}
        self.dead_until: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @classmethod
    def from_settings(cls, config_file: str | None, config_json: str | None) -> McpServers:
        """Both sources, names unique across them; ValueError for an unreadable file or bad JSON."""
        configs: dict[str, ServerConfig] = {}
        texts = []
        if config_file:
            try:
                with open(config_file, encoding="utf-8") as f:
                    texts.append(f.read())
            except OSError as e:
                raise ValueError(f"failed to open MCP config file: {config_file}: {e.strerror}") from None
        if config_json:
            texts.append(config_json)
        for text in texts:
            parsed = parse_config(text)
            if not parsed:
                log.warning("MCP config: no servers found in JSON")
            for c in parsed:
                if c.name in configs:
                    log.warning("MCP config: duplicate server name '%s', skipping", c.name)
                    continue
                configs[c.name] = c
        return cls(list(configs.values()))

    def __bool__(self) -> bool:
        return bool(self.configs)

    def warmup(self) -> None:
        """Each server spawned once to list its tools, then stopped; one that fails is logged and left out."""
        found = []
        for cfg in self.configs.values():
            server = StdioServer(cfg)
            if not server.start():
                log.warning("MCP warmup: failed to spawn '%s': %s", cfg.name, server.diagnostics())
                continue
            deadline = time.monotonic() + WARMUP_SECONDS
            tools = server.list_tools(lambda d=deadline: self.stopping.is_set() or time.monotonic() >= d)
            if not tools and server.last_error:
                log.warning("MCP warmup: '%s': %s", cfg.name, server.diagnostics())
            log.info("MCP warmup: '%s' discovered %d tools", cfg.name, len(tools))
            found += tools
            server.close()
        self.tools = found

    def _server(self, name: str) -> StdioServer | None:
        stale = []
        try:
            with self.lock:
                if self.stopping.is_set():
                    return None
                if time.monotonic() < self.dead_until.get(name, 0):
                    return None
                server = self.running.get(name)
                if server is not None and server.alive():
                    return server
                if server is not None:
                    log.warning("MCP '%s' is no longer alive: %s", name, server.diagnostics())
                    stale.append(self.running.pop(name))
                cfg = self.configs.get(name)
                if cfg is None:
                    return None
                fresh = StdioServer(cfg)
                if fresh.start() and fresh.alive():
                    self.running[name] = fresh
                    return fresh
                log.warning("MCP '%s': failed to start: %s", name, fresh.diagnostics())
                stale.append(fresh)
                self.dead_until[name] = time.monotonic() + COOLDOWN_SECONDS
                return None
        finally:
            for s in stale:
                s.close()

    def call(self, server_name: str, tool: str, arguments: dict, should_stop: Callable[[], bool]) -> dict:
        server = self._server(server_name)
        if server is None:
            return {"error": f"MCP server unavailable: {server_name}"}
        return server.call_tool(tool, arguments, lambda: self.stopping.is_set() or should_stop())

    def close(self) -> None:
        """Cancel the calls in flight (they answer "cancelled") and stop every server."""
        self.stopping.set()
        with self.lock:
            servers, self.running = list(self.running.values()), {}
        for s in servers:
            s.close()
