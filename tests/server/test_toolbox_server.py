"""/tools and /cors-proxy on a real server, as llama-server serves them (`--agent`, `--tools`, `--mcp-servers-json`,
`--ui-mcp-proxy`): the tool list, calls with the x-tool-* headers, a streamed shell command over SSE, MCP tools
from a real MCP server process, the CORS proxy, and a shutdown that does not wait for a slow tool call."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from llamacpy.server.cors_proxy import cors_proxy
from llamacpy.server.errors import EXCEPTION_HANDLERS
from llamacpy.server.toolbox import Toolbox, tools_get, tools_post

pytestmark = pytest.mark.slow

MCP_SERVER = str(Path(__file__).resolve().parent.parent / "data" / "mcp" / "mcp_test_server.py")


def mcp_json(**servers: list[str]) -> str:
    return json.dumps({"mcpServers": {name: {"command": sys.executable, "args": [MCP_SERVER, *args]}
                                      for name, args in servers.items()}})


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-np", "1", "-c", "512", "--agent",
                        "--mcp-servers-json", mcp_json(echo=[], quiet=["--notify"]))


@pytest.fixture(scope="module")
def http(server):
    with server.client(timeout=60) as c:
        yield c


def call(http, tool: str, params: dict, headers: dict | None = None) -> httpx.Response:
    return http.post("/tools", json={"tool": tool, "params": params}, headers=headers or {})


def test_tool_list(http):
    tools = http.get("/tools").json()
    names = [t["tool"] for t in tools]
    assert names[:7] == ["read_file", "file_glob_search", "grep_search", "exec_shell_command", "write_file",
                         "edit_file", "get_info"]
    assert {"echo_echo", "echo_add", "quiet_echo"} <= set(names)
    echo = next(t for t in tools if t["tool"] == "echo_echo")
    assert echo["type"] == "mcp" and echo["uses_cwd"] is False and echo["permissions"] == {"write": False}
    assert echo["definition"] == {"type": "function", "function": {
        "name": "echo_echo", "description": "Echo back the input message",
        "parameters": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}}}


def test_calls_with_the_cwd_header(http, tmp_path):
    headers = {"x-tool-cwd": str(tmp_path)}
    r = call(http, "write_file", {"path": "sub/out.txt", "content": "written", "cwd": "/not/a/real/path"}, headers)
    assert r.status_code == 200 and r.json()["result"] == "file written successfully"
    assert (tmp_path / "sub" / "out.txt").read_text() == "written"
    assert call(http, "read_file", {"path": "sub/out.txt"}, headers).json() == {"plain_text_response": "written\n"}
    assert "sub/out.txt" in call(http, "file_glob_search", {"path": "."}, headers).json()["plain_text_response"]
    call(http, "exec_shell_command", {"command": "echo hi > marker.txt"}, headers)
    assert (tmp_path / "marker.txt").read_text() == "hi\n"
    r = http.post("/tools", json={"tool": "read_file", "params": {"path": str(tmp_path / "marker.txt")}},
                  headers={**headers, "x-resp-type": "base64"})
    assert r.json() == {"base64": "aGkK", "size_bytes": 3}


def test_a_streamed_shell_command(http):
    frames = []
    with http.stream("POST", "/tools", json={"tool": "exec_shell_command", "stream": True,
                                             "params": {"command": "echo hello; sleep 0.3; echo world"}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == {"done": True}
    text = "".join(f["chunk"] for f in frames[:-1])
    assert text == "hello\nworld\n\n[exit code: 0]" and len(frames) >= 3


def test_mcp_calls(http):
    assert call(http, "echo_echo", {"message": "hello world"}).json() == {"plain_text_response": "echo: hello world"}
    assert call(http, "echo_add", {"a": 3, "b": 5}).json() == {"plain_text_response": "8"}
    assert call(http, "quiet_echo", {"message": "x"}).json() == {"plain_text_response": "echo: x"}

    def one(i: int) -> dict:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as c:
            return call(c, "echo_echo", {"message": f"m{i}"}).json()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [{"plain_text_response": f"echo: m{i}"} for i in range(8)]


def test_errors(http):
    r = call(http, "nope", {})
    assert r.status_code == 404 and r.json()["error"]["message"] == 'unknown tool "nope"'
    r = http.post("/tools", json={"tool": "read_file", "params": {"path": "x"}, "stream": True})
    assert r.status_code == 404 and "does not support stream = true" in r.json()["error"]["message"]
    r = call(http, "exec_shell_command", {"command": "echo hi"}, {"x-tool-runtime": "fake:does-not-exist"})
    assert r.status_code == 500 and "unknown tool runtime" in r.json()["error"]["message"]
    r = call(http, "exec_shell_command", {"command": "echo hi"}, {"x-tool-runtime": "ssh:-oProxyCommand=touch /tmp/x"})
    assert r.status_code == 500 and "invalid ssh target" in r.json()["error"]["message"]
    r = call(http, "read_file", {})
    assert r.status_code == 400
    assert http.post("/tools", content=b"{bad").status_code == 400
    r = call(http, "grep_search", {"path": "/nonexistent", "pattern": "x"})
    assert r.status_code == 200 and r.json() == {"error": "path does not exist: /nonexistent"}


def test_cors_stays_with_localhost_when_tools_are_on(http):
    assert "access-control-allow-origin" not in http.get("/health", headers={"Origin": "http://evil.example"}).headers
    local = http.get("/health", headers={"Origin": "http://localhost:3000"})
    assert local.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_cors_proxy(http, server):
    r = http.get("/cors-proxy", params={"url": f"{server.url}/models"})
    assert r.status_code == 200 and "data" in r.json()

    class NoContent(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("X-Custom"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    seen: list = []
    target = ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        r = http.post("/cors-proxy", params={"url": f"http://127.0.0.1:{target.server_port}/"}, json={},
                      headers={"x-llama-server-proxy-header-X-Custom": "yes", "Authorization": "not passed"})
        assert r.status_code == 204 and r.content == b"" and seen == ["yes"]
    finally:
        target.shutdown()
        target.server_close()
    for url, message in [("ftp://x/", "unsupported URL scheme"), ("http://u:p@x/", "authentication"),
                         ("nohost", "invalid target URL")]:
        r = http.get("/cors-proxy", params={"url": url})
        assert r.status_code == 500 and message in r.json()["error"]["message"], url


def test_routes_answer_403_when_off():
    app = Starlette(routes=[Route("/tools", tools_get, methods=["GET"]), Route("/tools", tools_post, methods=["POST"]),
                            Route("/cors-proxy", cors_proxy, methods=["GET"])], exception_handlers=EXCEPTION_HANDLERS)
    app.state.toolbox, app.state.cors_proxy = Toolbox([]), False
    with TestClient(app) as c:
        for r in (c.get("/tools"), c.post("/tools", json={"tool": "read_file"}), c.get("/cors-proxy?url=http://x")):
            assert r.status_code == 403
            assert r.json()["error"] == {"code": 403, "message": "this feature is disabled", "type": "feature_disabled"}


def test_mcp_only_and_a_shutdown_that_does_not_wait_for_a_slow_call(start_server, smollm2_path):
    s = start_server(smollm2_path, "-np", "1", "-c", "256", "--mcp-servers-json", mcp_json(slow=["--grandchild"]))
    with s.client(timeout=30) as c:
        assert [t["tool"] for t in c.get("/tools").json()] == [
            "slow_echo", "slow_add", "slow_fail_once", "slow_sleep", "slow_crash", "slow_error"]
        assert c.get("/cors-proxy", params={"url": "http://x/"}).status_code == 403
        worker = threading.Thread(target=lambda: call(c, "slow_sleep", {"seconds": 30}), daemon=True)
        worker.start()
        time.sleep(1.5)
        t0 = time.monotonic()
        s.stop(signal.SIGTERM)
        assert time.monotonic() - t0 < 3
