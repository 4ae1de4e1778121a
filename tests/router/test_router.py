"""Router mode against real models: `llamacpy server --models-dir DIR --models-preset FILE`, one child server
per model. Two catalog models (smollm2, gemma) and a preset model whose name has a slash (`team/smol`)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import anthropic
import httpx
import pytest
from openai import OpenAI
from routerkit import RouterProcess, models_dir

pytestmark = pytest.mark.slow

SLASHED = "team/smol"
CHILD_FLAGS = ("-c", "1024", "-np", "2", "-t", "1")


@pytest.fixture(scope="module")
def router(tmp_path_factory, smollm2_path: Path, gemma_path: Path):
    root = tmp_path_factory.mktemp("router")
    broken = root / "broken.bin"
    broken.write_bytes(b"GGUF" + bytes(60))  # a GGUF header with nothing behind it
    folder = models_dir(root, {"smollm2": smollm2_path, "gemma": gemma_path, "broken": broken})
    preset = root / "preset.ini"
    preset.write_text(f"version = 1\n[*]\nn-predict = 4000\n[{SLASHED}]\nmodel = {smollm2_path}\nalias = smol\n")
    r = RouterProcess("--models-dir", str(folder), "--models-preset", str(preset), "--models-max", "2", *CHILD_FLAGS)
    r.models_folder = folder
    yield r
    r.stop()


def child_port(router: RouterProcess, model: str) -> int:
    ports = re.findall(rf"model {re.escape(model)} loaded in [\d.]+ s \(port (\d+)\)", router.log_text())
    return int(ports[-1])


def child_pid(router: RouterProcess, model: str) -> int:
    for pid in router.child_pids():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if argv[argv.index(b"--alias") + 1].split(b",")[0].decode() == model:
            return pid
    raise AssertionError(f"no child for {model}")


def ensure_loaded(router: RouterProcess, model: str) -> None:
    if router.statuses()[model]["value"] == "unloaded":
        assert router.http.post("/models/load", json={"model": model}).json() == {"success": True}
    router.wait_status(model, "loaded")


def post_raw(url: str, path: str, body: dict, headers: dict[str, str]) -> socket.socket:
    """A POST over a raw socket (the test decides when the client vanishes)."""
    u = urlparse(url)
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s = socket.create_connection((u.hostname, u.port), timeout=120)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
              f"{head}\r\n".encode() + data)
    return s


def read_until(s: socket.socket, needle: bytes, limit: int = 1 << 20) -> bytes:
    got = b""
    while needle not in got and len(got) < limit:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def sse_text(body: str) -> str:
    out = []
    for line in body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                out.append(choice.get("text") or choice.get("delta", {}).get("content") or "")
    return "".join(out)


# -- tests ------------------------------------------------------------------------------------------------------

def test_two_models_side_by_side_then_lru(router):
    statuses = router.statuses()
    assert set(statuses) == {"smollm2", "gemma", "broken", SLASHED}
    assert all(s["value"] == "unloaded" for s in statuses.values())
    client = OpenAI(base_url=router.url + "/v1", api_key="none", max_retries=0)
    answers: dict[str, object] = {}

    def ask(model: str) -> None:
        answers[model] = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Name a color."}], max_tokens=8, temperature=0)

    threads = [threading.Thread(target=ask, args=(m,)) for m in ("smollm2", "gemma")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert {m: a.model for m, a in answers.items()} == {"smollm2": "smollm2", "gemma": "gemma"}
    assert all(a.choices[0].message.content for a in answers.values())
    assert router.statuses()["smollm2"]["value"] == router.statuses()["gemma"]["value"] == "loaded"

    # the alias routes to its model; --models-max 2: the least recently used model (smollm2) gives way
    client.completions.create(model="gemma", prompt="Hi", max_tokens=2)
    reply = client.completions.create(model="smol", prompt="Hi", max_tokens=2)
    assert reply.model == SLASHED
    s = router.statuses()
    assert (s[SLASHED]["value"], s["gemma"]["value"], s["smollm2"]["value"]) == ("loaded", "loaded", "unloaded")
    assert not s["smollm2"].get("failed")
    assert "unloading smollm2 (least recently used)" in router.log_text()

    # unload, load
    assert router.http.post("/models/unload", json={"model": "gemma"}).json() == {"success": True}
    assert router.statuses()["gemma"]["value"] == "unloaded"
    assert router.http.post("/models/unload", json={"model": "gemma"}).status_code == 400
    assert router.http.post("/models/load", json={"model": "gemma"}).json() == {"success": True}
    assert router.statuses()["gemma"]["value"] in ("loading", "loaded")
    router.wait_status("gemma", "loaded")
    assert router.http.post("/models/load", json={"model": "gemma"}).status_code == 400  # already running


def test_stream_of_slashed_model_resumed_looked_up_stopped(router):
    ensure_loaded(router, SLASHED)
    identity = "conv-42::" + SLASHED
    s = post_raw(router.url, "/v1/completions", {"model": SLASHED, "prompt": "Once upon a time", "stream": True,
                                                  "max_tokens": 3000, "ignore_eos": True},
                 {"X-Conversation-Id": identity})
    head = read_until(s, b"data: ")
    assert head.startswith(b"HTTP/1.1 200")
    s.close()  # the client vanishes: the generation goes on in the child

    found = router.http.post("/v1/streams/lookup", json={"conversation_ids": [identity, "unknown"]}).json()
    assert [e["conversation_id"] for e in found] == [identity] and found[0]["is_done"] is False
    assert router.http.post("/v1/streams/lookup", json={"conversation_ids": ["conv-42"]}).json() == []  # exact ids
    assert router.http.post("/v1/streams/lookup", content=b"{not json").json() == []

    # resume through the query form and through the path form (the id holds '::' and '/')
    with router.http.stream("GET", "/v1/stream", params={"conv_id": identity, "from": 0}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = b""
        for chunk in r.iter_raw():
            first += chunk
            if first.count(b"\n\n") >= 5:
                break
    offset = len(first)
    with router.http.stream("GET", f"/v1/stream/{quote(identity, safe='')}?from={offset}") as r:
        assert r.status_code == 200
        rest = b""
        for chunk in r.iter_raw():
            rest += chunk
            if rest.count(b"\n\n") >= 3:
                break
    assert rest.startswith((b"data: ", b":"))  # at a frame boundary: the offset was exact
    assert (first + rest).count(b"data: ") == first.count(b"data: ") + rest.count(b"data: ")
    slots = router.http.get("/slots", params={"model": SLASHED}).json()
    assert any(slot["is_processing"] for slot in slots)

    # stop it through the router
    assert router.http.delete("/v1/stream", params={"conv_id": identity}).status_code == 204
    deadline = time.monotonic() + 30
    while any(slot["is_processing"] for slot in router.http.get("/slots", params={"model": SLASHED}).json()):
        assert time.monotonic() < deadline, "the generation goes on after DELETE"
        time.sleep(0.1)
    assert router.http.post("/v1/streams/lookup", json={"conversation_ids": [identity]}).json() == []
    assert router.http.get("/v1/stream", params={"conv_id": identity}).status_code == 404


def test_parked_request_cancelled_while_its_model_loads(router):
    model = "smollm2"
    if router.statuses()[model]["value"] != "unloaded":
        router.http.post("/models/unload", json={"model": model})
    identity = "conv-parked::" + model
    result: dict[str, httpx.Response] = {}

    def post() -> None:
        result["r"] = router.http.post("/v1/chat/completions", headers={"X-Conversation-Id": identity},
                                       json={"model": model, "stream": True, "max_tokens": 5,
                                             "messages": [{"role": "user", "content": "Hi"}]})

    t = threading.Thread(target=post)
    t.start()
    router.wait_status(model, "loading", timeout=30)
    assert router.http.get("/v1/stream", params={"conv_id": identity}).status_code == 503  # retry later
    assert router.http.delete("/v1/stream", params={"conv_id": identity}).status_code == 204
    t.join(60)
    assert result["r"].status_code == 400 and "cancelled" in result["r"].json()["error"]["message"]
    router.wait_status(model, "loaded")  # the load itself goes on


def test_killed_child_leaves_the_router_serving(router):
    for model in ("smollm2", "gemma"):
        ensure_loaded(router, model)
    victim = child_pid(router, "smollm2")
    s = post_raw(router.url, "/v1/completions", {"model": "smollm2", "prompt": "Once upon a time", "stream": True,
                                                  "max_tokens": 3000, "ignore_eos": True}, {})
    read_until(s, b"data: ")
    os.kill(victim, signal.SIGKILL)
    s.settimeout(30)
    tail = read_until(s, b"\r\n0\r\n\r\n")  # the end of the chunked response
    s.close()
    assert tail.endswith(b"\r\n0\r\n\r\n")
    last_event = tail.rsplit(b"data: ", 1)[1]
    assert b'"code": 502' in last_event and b"smollm2" in last_event  # a clean error event ends the stream

    status = router.wait_status("smollm2", "unloaded", timeout=10)
    assert status["failed"] is True and status["exit_code"] == -signal.SIGKILL
    assert router.http.get("/health").json() == {"status": "ok"}
    other = router.http.post("/v1/completions", json={"model": "gemma", "prompt": "Hi", "max_tokens": 3})
    assert other.status_code == 200
    again = router.http.post("/v1/completions", json={"model": "smollm2", "prompt": "Hi", "max_tokens": 3})
    assert again.status_code == 200 and again.json()["model"] == "smollm2"
    assert router.statuses()["smollm2"] == {**router.statuses()["smollm2"], "value": "loaded"}
    assert not router.statuses()["smollm2"].get("failed")


def test_a_model_that_cannot_load_fails_cleanly(router):
    r = router.http.post("/v1/completions", json={"model": "broken", "prompt": "Hi", "max_tokens": 1})
    assert r.status_code == 500
    message = r.json()["error"]["message"]
    assert "model 'broken' failed to load (exit code 1)" in message and "broken.gguf" in message
    status = router.statuses()["broken"]
    assert status["value"] == "unloaded" and status["failed"] is True and status["exit_code"] == 1
    assert router.http.post("/v1/completions", json={"model": "broken", "prompt": "Hi"}).status_code == 500  # again
    assert router.http.get("/health").status_code == 200


def test_children_answer_only_their_router(router):
    ensure_loaded(router, "gemma")
    port = child_port(router, "gemma")
    for path in ("/health", "/v1/models", "/slots"):
        r = httpx.get(f"http://127.0.0.1:{port}{path}")
        assert r.status_code == 401, path
    r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "Hi", "max_tokens": 1},
                   headers={"x-llamacpy-router-secret": "guess"})
    assert r.status_code == 401
    argv = Path(f"/proc/{child_pid(router, 'gemma')}/cmdline").read_bytes().decode()
    assert "secret" not in argv.lower()


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/chat/completions", {"messages": []}, 400, "model name is missing"),
    ("POST", "/v1/completions", {"model": "nope", "prompt": "x"}, 400, "model 'nope' not found"),
    ("POST", "/v1/completions", b"{bad json", 400, "invalid JSON"),
    ("POST", "/models/load", {"model": "nope"}, 404, "model is not found"),
    ("POST", "/models/unload", {"model": "nope"}, 404, "model is not found"),
    ("GET", "/slots", None, 400, "model name is missing"),
    ("GET", "/v1/stream?conv_id=never-seen", None, 404, "Stream not found"),
    ("GET", "/v1/stream", None, 400, "Missing conversation id"),
    ("DELETE", "/v1/stream", None, 400, "Missing conversation id"),
    ("POST", "/v1/completions?autoload=false", {"model": "nope", "prompt": "x"}, 400, "not found"),
])
def test_bad_requests_get_clear_errors(router, method, path, body, status, message):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    r = router.http.request(method, path, **kw)
    assert r.status_code == status and message in r.json()["error"]["message"], r.text
    assert router.http.get("/health").status_code == 200


def test_autoload_off_and_props(router):
    model = SLASHED
    if router.statuses()[model]["value"] != "unloaded":
        router.http.post("/models/unload", json={"model": model})
    r = router.http.post("/v1/completions?autoload=false", json={"model": model, "prompt": "x", "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["message"] == "model is not loaded"
    props = router.http.get("/props").json()
    assert props["role"] == "router" and props["max_instances"] == 2
    assert router.http.get("/props", params={"model": "gemma"}).json()["model_alias"] == "gemma"


def test_api_key_and_shutdown_stop_every_child(tmp_path, smollm2_path):
    folder = models_dir(tmp_path, {"smollm2": smollm2_path})
    preset = tmp_path / "p.ini"
    preset.write_text("version = 1\n[smollm2]\nload-on-startup = true\n")
    r = RouterProcess("--models-dir", str(folder), "--models-preset", str(preset), "--api-key", "sekrit", *CHILD_FLAGS)
    try:
        r.wait_status("smollm2", "loaded")  # /v1/models is public
        body = {"model": "smollm2", "prompt": "Hi", "max_tokens": 2}
        assert r.http.post("/v1/completions", json=body).status_code == 401
        ok = r.http.post("/v1/completions", json=body, headers={"Authorization": "Bearer sekrit"})
        assert ok.status_code == 200
        children = r.child_pids()
        assert len(children) == 1
        # a page following the model statuses must not hold the shutdown up
        u = urlparse(r.url)
        watcher = socket.create_connection((u.hostname, u.port), timeout=30)
        watcher.sendall(b"GET /models/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit\r\n\r\n")
        assert read_until(watcher, b"model_status").startswith(b"HTTP/1.1 200")
    finally:
        t0 = time.monotonic()
        code = r.stop()
    assert code == 0 and time.monotonic() - t0 < 10
    watcher.close()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_reload_rescans_the_folder(router, smollm2_path):
    ensure_loaded(router, "gemma")
    extra = router.models_folder / "late.gguf"
    extra.symlink_to(smollm2_path)
    try:
        assert "late" not in router.statuses()
        listed = {m["id"]: m["status"] for m in router.http.get("/v1/models?reload=1").json()["data"]}
        assert listed["late"]["value"] == "unloaded" and listed["gemma"]["value"] == "loaded"  # unchanged: kept
        assert router.http.post("/v1/completions", json={"model": "late", "prompt": "Hi", "max_tokens": 2}).status_code == 200
    finally:
        extra.unlink()
    listed = {m["id"]: m["status"] for m in router.http.get("/models", params={"reload": "1"}).json()["data"]}
    assert "late" not in listed and listed["gemma"]["value"] == "loaded"
    assert router.http.post("/v1/completions", json={"model": "late", "prompt": "Hi"}).status_code == 400
    assert not [pid for pid in router.child_pids()
                if b"late" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # its child was stopped


def test_status_events(router):
    model = SLASHED
    if router.statuses()[model]["value"] != "unloaded":
        router.http.post("/models/unload", json={"model": model})
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def listen() -> None:
        with router.http.stream("GET", "/models/sse") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "model_status":
                    data = json.loads(line[6:])
                    seen.append((data["model"], data["status"]["value"]))
                    if seen[-1] == (model, "unloaded") and (model, "loaded") in seen:
                        break
        done.set()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while (model, "unloaded") not in seen:  # the current state of every model comes first
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert {m for m, _ in seen} >= {"smollm2", "gemma", model}
    router.http.post("/models/load", json={"model": model})
    router.wait_status(model, "loaded")
    router.http.post("/models/unload", json={"model": model})
    assert done.wait(30), seen
    mine = [v for m, v in seen if m == model]
    assert mine == ["unloaded", "loading", "loaded", "unloaded"]


def test_messages_and_responses_reach_the_named_model(router):
    """The Anthropic and Responses routes are proxied by the body's `model`, aliases included."""
    claude = anthropic.Anthropic(base_url=router.url, api_key="none", max_retries=0, timeout=180)
    hi = [{"role": "user", "content": "Hi"}]
    for name, served in (("gemma", "gemma"), ("smol", SLASHED)):
        m = claude.messages.create(model=name, max_tokens=4, messages=hi)
        assert m.type == "message" and m.model == served
    r = OpenAI(base_url=router.url + "/v1", api_key="none", max_retries=0).responses.create(
        model="gemma", input="Hi", max_output_tokens=2)
    assert r.object == "response" and r.model == "gemma"
    counts = {}
    for name in ("gemma", "smol"):
        counts[name] = claude.messages.count_tokens(model=name, messages=hi).input_tokens
        chat = router.http.post("/v1/chat/completions/input_tokens", json={"model": name, "messages": hi})
        assert chat.json()["input_tokens"] == counts[name]
    assert counts["gemma"] != counts["smol"]  # each model's own template and vocabulary


def test_slot_actions_and_lora_adapters_reach_the_named_model(router):
    """POST /slots/{id}?action=... and GET/POST /lora-adapters go to `?model=`'s child, as llama-server's router
    proxies them (the slot files' folder is the child's: none given here, so saving is its 501)."""
    ensure_loaded(router, "gemma")
    assert router.http.get("/lora-adapters", params={"model": "gemma"}).json() == []
    r = router.http.post("/lora-adapters", params={"model": "gemma"}, json=[{"id": 0, "scale": 0.5}])
    assert r.status_code == 200 and r.json() == {"success": True}
    r = router.http.post("/slots/0", params={"model": "gemma", "action": "erase"})
    assert r.status_code == 501 and "slot-save-path" in r.text
