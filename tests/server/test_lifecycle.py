"""Startup and shutdown: flags, 503 while the model loads, a graceful exit on SIGTERM/SIGINT mid-stream."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import httpx
import pytest

from llamacpy.cli.main import build_parser
from llamacpy.sampling import SamplingParams
from llamacpy.server.app import create_app
from llamacpy.server.context import ServerContext
from llamacpy.server.settings import ServerSettings


def test_flags_fill_the_settings():
    a = build_parser().parse_args(["server", "-m", "x.gguf", "-np", "3", "-c", "2048", "--port", "9000",
                                   "--api-key", "k1,k2", "-a", "one,two", "--no-slots", "--no-webui", "--metrics",
                                   "-n", "64", "--temp", "0.5", "-to", "10"])
    s = ServerSettings.from_args(a, SamplingParams(temperature=a.temp))
    assert (s.model, s.n_slots, s.ctx_size, s.port, s.host) == ("x.gguf", 3, 2048, 9000, "127.0.0.1")
    assert s.api_keys() == ["k1", "k2"] and s.alias == ["one", "two"]
    assert (s.slots, s.webui, s.metrics, s.n_predict, s.timeout, s.sampling.temperature) == (
        False, False, True, 64, 10, 0.5)
    assert ServerSettings().n_slots == 4  # -np -1 = auto


def test_api_key_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text("alpha\n\n beta \n")
    assert ServerSettings(api_key=["k"], api_key_file=str(f)).api_keys() == ["k", "alpha", "beta"]


def test_every_api_route_answers_503_while_the_model_loads():
    ctx = ServerContext(ServerSettings(model="not-loaded-yet"))  # the engine is never started

    async def run():
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            return [await c.get("/health"), await c.post("/v1/chat/completions", json={}),
                    await c.get("/v1/models"), await c.get("/")]

    health, chat, models, page = asyncio.run(run())
    for r in (health, chat, models):
        assert r.status_code == 503
        assert r.json() == {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    assert page.status_code == 200  # the web page is served while loading


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_ends_streams_cleanly_and_exits(start_server, smollm2_path, sig):
    server = start_server(smollm2_path, "-np", "2", "-c", "2048")
    lines: list[str] = []
    ended = threading.Event()

    def stream():
        body = {"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 1500,
                "stream": True, "temperature": 0}
        with httpx.Client(base_url=server.url, timeout=30) as c, c.stream("POST", "/v1/chat/completions",
                                                                           json=body) as r:
            for line in r.iter_lines():
                lines.append(line)  # noqa: PERF402 - read by the test thread as they arrive
        ended.set()

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    while sum(line.startswith("data: ") for line in lines) < 5:
        assert t.is_alive()
        time.sleep(0.02)
    t0 = time.monotonic()
    server.proc.send_signal(sig)
    assert ended.wait(5), "the stream did not end after the signal"
    assert server.proc.wait(5) == 0
    assert time.monotonic() - t0 < 5
    last = json.loads([line for line in lines if line.startswith("data: ")][-1][6:])
    assert last["error"]["type"] == "unavailable_error" and last["error"]["code"] == 503
    assert "shutting down" in server.log_text()
