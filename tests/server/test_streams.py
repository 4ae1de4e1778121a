"""Resumable streams end to end: a real server process, the real default model, real sockets.

A raw socket client reads part of a stream and hangs up (httpx cannot be made to leave mid-body on cue);
httpx does the rest. Servers: one with the default stream limits; one with a tiny buffer, a session cap and
an API key; one with a short TTL; one that is shut down mid-stream.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx
import pytest

pytestmark = pytest.mark.slow

KEY = "sekrit"
CAP = 1024  # above any single frame, below a whole stream
TTL = 1.0
MAX_SESSIONS = 100


# -- a server per configuration (started by conftest's start_server, stopped at the module's end) ----------------


class Server:
    """A started server (conftest's ServerProcess) with the stream routes' helpers."""

    def __init__(self, process, key: str | None = None):
        self.process, self.proc, self.url = process, process.proc, process.url
        self.port = int(self.url.rsplit(":", 1)[1])
        self.client = process.client(headers={"Authorization": f"Bearer {key}"} if key else {})

    def lookup(self, *ids: str) -> list[dict]:
        r = self.client.post("/v1/streams/lookup", json={"conversation_ids": list(ids)})
        assert r.status_code == 200, r.text
        return r.json()

    def wait_done(self, cid: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.lookup(cid) if s["conversation_id"] == cid]
            if found and found[0]["is_done"]:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"stream {cid} did not finish")

    def replay(self, cid: str, offset: int = 0) -> bytes:
        r = self.client.get(f"/v1/stream/{cid}", params={"from": offset})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        return r.content

    def busy_slots(self) -> int:
        return sum(s["is_processing"] for s in self.client.get("/slots").json())


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return Server(start_server(smollm2_path, "-c", "2048", "-np", "2"))


@pytest.fixture(scope="module")
def small(start_server, smollm2_path):
    return Server(start_server(smollm2_path, "-c", "2048", "-np", "8", "--stream-buffer-size", str(CAP),
                               "--stream-max-sessions", str(MAX_SESSIONS), "--api-key", KEY), key=KEY)


@pytest.fixture(scope="module")
def short(start_server, smollm2_path):
    return Server(start_server(smollm2_path, "-c", "2048", "-np", "1", "--stream-ttl", str(TTL)))


# -- a raw HTTP/1.1 client ---------------------------------------------------------------------------------------


class RawStream:
    """POST (GET without a body) over a plain socket, reading the chunked body piece by piece; `close()`
    hangs up at once."""

    def __init__(self, port: int, path: str, body: dict | None, headers: dict[str, str] | None = None,
                 wait: bool = True):
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{'GET' if body is None else 'POST'} {path} HTTP/1.1", "Host: 127.0.0.1"]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        self.buf = b""
        self.body = b""   # SSE body bytes received so far (de-chunked)
        self.ended = False
        if wait:
            self.read_head()

    def read_head(self) -> None:
        """Status and headers (a resumable stream sends them with its first byte)."""
        raw = self._read_until(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        out, _, self.buf = self.buf.partition(sep)
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_chunk(self) -> bytes | None:
        """The next HTTP chunk of the body, or None at its end."""
        if self.ended:
            return None
        size = int(self._read_until(b"\r\n").split(b";")[0], 16)
        data = self._read_exact(size)
        self._read_exact(2)
        if size == 0:
            self.ended = True
            return None
        self.body += data
        return data

    def read_frames(self, n: int) -> bytes:
        """Read until the body holds at least n complete SSE frames."""
        while self.body.count(b"\n\n") < n and self.read_chunk() is not None:
            pass
        return self.body

    def read_all(self) -> bytes:
        while self.read_chunk() is not None:
            pass
        return self.body

    def close(self) -> None:
        self.sock.close()


def chat(content: str = "Write a short poem about the sea.", max_tokens: int = 24, **extra) -> dict:
    return {"messages": [{"role": "user", "content": content}], "stream": True, "max_tokens": max_tokens,
            "temperature": 0, **extra}


def frames(body: bytes) -> list[bytes]:
    return [f for f in body.split(b"\n\n") if f]


def text_of(body: bytes) -> str:
    out = []
    for f in frames(body):
        if f.startswith(b"data: {"):
            for choice in json.loads(f[6:]).get("choices", []):
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


# -- the done-when criteria ----------------------------------------------------------------------------------------


def test_disconnect_then_resume_gives_exactly_the_rest(server):
    s = RawStream(server.port, "/v1/chat/completions", chat(max_tokens=32), {"X-Conversation-Id": "resume-1"})
    assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream")
    prefix = s.read_frames(3)
    s.close()  # the client leaves mid-stream
    status = server.wait_done("resume-1")  # ... and the generation still completes
    rest = server.replay("resume-1", len(prefix))
    full = server.replay("resume-1", 0)
    assert prefix + rest == full and len(full) == status["total_bytes"]
    assert full.endswith(b"data: [DONE]\n\n")
    assert b'"finish_reason":"length"' in full  # it ran to max_tokens, not cut at the disconnect


def test_resumed_text_equals_uninterrupted_text_at_temperature_0(server):
    # cache_prompt off: both runs evaluate the prompt in one chunk, so their logits agree to the last bit
    body = chat("Name three colors.", max_tokens=20, cache_prompt=False)
    plain = server.client.post("/v1/chat/completions", json=body)
    assert plain.status_code == 200
    s = RawStream(server.port, "/v1/chat/completions", body, {"X-Conversation-Id": "temp0"})
    prefix = s.read_frames(4)
    s.close()
    server.wait_done("temp0")
    resumed = prefix + server.replay("temp0", len(prefix))
    assert text_of(resumed) == text_of(plain.content) and text_of(plain.content)
    assert resumed.endswith(b"data: [DONE]\n\n") and plain.content.endswith(b"data: [DONE]\n\n")


def test_a_connected_client_gets_the_same_bytes_as_a_replay(server):
    r = server.client.post("/v1/completions", json={"prompt": "The sea is", "stream": True, "max_tokens": 8,
                                                   "temperature": 0}, headers={"X-Conversation-Id": "cmpl"})
    assert r.status_code == 200 and r.headers["x-accel-buffering"] == "no"
    assert r.content == server.replay("cmpl") and r.content.endswith(b"data: [DONE]\n\n")
    # native /completion: no [DONE], the last frame says stop
    r = server.client.post("/completion", json={"prompt": "The sea is", "stream": True, "n_predict": 4},
                           headers={"X-Conversation-Id": "native"})
    assert r.content == server.replay("native") and b"[DONE]" not in r.content
    assert json.loads(frames(r.content)[-1][6:])["stop"] is True


def test_delete_stops_the_generation_and_frees_its_slot(server):
    s = RawStream(server.port, "/v1/chat/completions", chat(max_tokens=1000, ignore_eos=True),
                  {"X-Conversation-Id": "to-stop"})
    s.read_frames(3)
    assert server.busy_slots() == 1
    t0 = time.monotonic()
    assert server.client.delete("/v1/stream/to-stop").status_code == 204
    while server.busy_slots() and time.monotonic() - t0 < 10:
        time.sleep(0.02)  # not a busy loop: on two cores it would starve the server it polls
    freed_in = time.monotonic() - t0
    # a decoding step is ~10-50 ms here (freed in ~0.02 s on a quiet machine); the bound leaves room for a
    # loaded CI machine and is still far below the ~10 s that the remaining ~1000 tokens would take
    assert server.busy_slots() == 0 and freed_in < 3.0, freed_in
    body = s.read_all()  # the original client's stream ends, without [DONE]
    s.close()
    assert not body.endswith(b"[DONE]\n\n") and text_of(body).count(" ") < 900
    assert server.client.get("/v1/stream/to-stop").status_code == 404
    assert server.lookup("to-stop") == []
    assert server.client.delete("/v1/stream/to-stop").status_code == 204  # idempotent
    assert server.client.delete("/v1/stream?conv_id=never-was").status_code == 204


def test_a_second_post_replaces_the_first(server):
    old = RawStream(server.port, "/v1/chat/completions", chat(max_tokens=1000, ignore_eos=True),
                    {"X-Conversation-Id": "twice"})
    old.read_frames(2)
    new = server.client.post("/v1/chat/completions", json=chat("Say hi.", max_tokens=6),
                             headers={"X-Conversation-Id": "twice"})
    old_body = old.read_all()
    old.close()
    assert not old_body.endswith(b"[DONE]\n\n")  # the old stream ended without [DONE]
    assert new.content.endswith(b"data: [DONE]\n\n") and server.replay("twice") == new.content
    assert [x["conversation_id"] for x in server.lookup("twice")] == ["twice"]
    assert server.busy_slots() == 0


def test_lookup_answers_only_the_ids_asked(server):
    for cid in ("look", "look::some/model", "lookalike", "other"):
        server.client.post("/v1/completions", json={"prompt": "Hi", "stream": True, "max_tokens": 2},
                           headers={"X-Conversation-Id": cid})
    got = server.lookup("look")
    assert sorted(x["conversation_id"] for x in got) == ["look", "look::some/model"]
    for x in got:
        assert x["is_done"] and x["total_bytes"] > 0 and x["completed_at"] >= x["started_at"] > 0
        assert set(x) == {"conversation_id", "is_done", "total_bytes", "started_at", "completed_at"}
    assert [x["conversation_id"] for x in server.lookup("look::some/model")] == ["look::some/model"]
    assert server.lookup("nope", "", "loo") == []
    r = server.client.post("/v1/streams/lookup", json={"conversation_ids": "look"})
    assert r.json() == []  # not an array: no ids
    r = server.client.post("/v1/streams/lookup", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"].startswith("invalid body: ")
    assert server.client.get("/v1/streams").status_code == 404  # no listing route


def test_both_route_forms_and_encoded_ids(server):
    cid = "conv::org/model name"
    r = server.client.post("/v1/completions", json={"prompt": "Hi", "stream": True, "max_tokens": 3},
                           headers={"X-Conversation-Id": cid})
    full = r.content
    encoded = "conv%3A%3Aorg%2Fmodel%20name"
    assert server.client.get(f"/v1/stream/{encoded}?from=5").content == full[5:]
    assert server.client.get("/v1/stream", params={"conv_id": cid, "from": 7}).content == full[7:]
    assert server.client.get(f"/v1/stream/{encoded}", headers={"Last-Event-ID": "9"}).content == full[9:]
    assert server.client.delete("/v1/stream", params={"conv_id": cid}).status_code == 204
    assert server.client.get(f"/v1/stream/{encoded}").status_code == 404


def test_a_resume_the_server_cannot_honour_says_so(server):
    r = server.client.get("/v1/stream/unknown-id")
    assert r.status_code == 404 and r.json() == {
        "error": {"code": 404, "message": "Stream not found or expired", "type": "not_found_error"}}
    server.client.post("/v1/completions", json={"prompt": "Hi", "stream": True, "max_tokens": 2},
                       headers={"X-Conversation-Id": "errs"})
    total = server.wait_done("errs")["total_bytes"]
    for query, message in (("from=abc", "Invalid 'from' offset"), ("from=-1", "Invalid 'from' offset")):
        r = server.client.get(f"/v1/stream/errs?{query}")
        assert r.status_code == 400 and r.json()["error"]["message"] == message
    r = server.client.get("/v1/stream/errs", headers={"Last-Event-ID": "x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = server.client.get(f"/v1/stream/errs?from={total + 1}")  # bytes never sent: another stream's offset
    assert r.status_code == 400 and "offset" in r.json()["error"]["message"]
    assert server.client.get(f"/v1/stream/errs?from={total}").content == b""  # read it all: empty, 200
    for bad in ("/v1/stream/", "/v1/stream", "/v1/stream?conv_id="):
        r = server.client.get(bad)
        assert r.status_code == 400 and r.json()["error"]["message"] == "Missing conversation id in path"
        assert server.client.delete(bad).status_code == 400


def test_without_a_stream_or_with_an_early_error_no_session_is_made(server):
    r = server.client.post("/v1/chat/completions", json={**chat(max_tokens=2), "stream": False},
                           headers={"X-Conversation-Id": "not-streamed"})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    r = server.client.post("/v1/chat/completions", json=chat(max_tokens=-5),
                           headers={"X-Conversation-Id": "bad-request"})
    assert r.status_code == 400
    assert server.lookup("not-streamed", "bad-request") == []


def test_without_the_header_a_disconnect_still_cancels(server):
    s = RawStream(server.port, "/v1/chat/completions", chat(max_tokens=1000, ignore_eos=True))
    s.read_frames(2)
    s.close()
    t0 = time.monotonic()
    while server.busy_slots() and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    assert server.busy_slots() == 0


# -- limits: buffer cap, TTL, session count, API key -------------------------------------------------------------


def test_api_key_guards_all_three_routes(small):
    anon = httpx.Client(base_url=small.url, timeout=30)
    for method, path, body in (("GET", "/v1/stream/x", None), ("GET", "/v1/stream?conv_id=x", None),
                               ("DELETE", "/v1/stream/x", None), ("POST", "/v1/streams/lookup", {"conversation_ids": ["x"]})):
        r = anon.request(method, path, json=body)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = anon.request(method, path, json=body, headers={"X-Api-Key": KEY})
        assert r.status_code in (200, 204, 404)
    anon.close()


def test_offset_lost_when_the_buffer_dropped_it(small):
    r = small.client.post("/v1/chat/completions", json=chat(max_tokens=16, ignore_eos=True),
                          headers={"X-Conversation-Id": "long"})
    total = len(r.content)
    assert total > 2 * CAP and small.wait_done("long")["total_bytes"] == total  # its own client got it all
    lost = small.client.get("/v1/stream/long?from=0")
    assert lost.status_code == 400 and lost.json() == {
        "error": {"code": 400, "message": "Stream offset lost, please restart", "type": "invalid_request_error"}}
    assert small.client.get(f"/v1/stream/long?from={total - CAP - 1}").status_code == 400
    assert small.replay("long", total - CAP) == r.content[-CAP:]


def test_finished_streams_expire_after_the_ttl(short):
    short.client.post("/v1/completions", json={"prompt": "Hi", "stream": True, "max_tokens": 2},
                      headers={"X-Conversation-Id": "short-lived"})
    assert short.client.get("/v1/stream/short-lived").status_code == 200
    time.sleep(TTL + 0.2)
    assert short.lookup("short-lived") == []
    r = short.client.get("/v1/stream/short-lived")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Stream not found or expired"


def test_hundred_concurrent_sessions_hold_at_most_the_cap_each(small):
    auth = {"Authorization": f"Bearer {KEY}"}
    ids = [f"many-{i}" for i in range(100)]
    body = {"prompt": "Once upon a time", "stream": True, "max_tokens": 4, "ignore_eos": True}
    clients = [RawStream(small.port, "/v1/completions", body, {"X-Conversation-Id": cid, **auth}, wait=False)
               for cid in ids]
    for c in clients:
        c.read_head()
        assert c.status == 200
        c.close()  # nobody stays to read: every generation must still run to its end
    for cid in ids:
        small.wait_done(cid, timeout=120)
    for st in small.lookup(*ids):
        total = st["total_bytes"]
        assert total > CAP
        tail = small.replay(st["conversation_id"], total - CAP)
        assert len(tail) == CAP and tail.endswith(b"data: [DONE]\n\n")
        assert small.client.get(f"/v1/stream/{st['conversation_id']}?from={total - CAP - 1}").status_code == 400


def test_too_many_live_sessions_is_a_clear_503(small):
    auth = {"Authorization": f"Bearer {KEY}"}
    ids = [f"live-{i}" for i in range(MAX_SESSIONS)]
    body = {"prompt": "Hi", "stream": True, "max_tokens": 200, "ignore_eos": True}
    clients = [RawStream(small.port, "/v1/completions", body, {"X-Conversation-Id": cid, **auth}, wait=False)
               for cid in ids]
    try:
        deadline = time.monotonic() + 60
        while len(small.lookup(*ids)) < MAX_SESSIONS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(small.lookup(*ids)) == MAX_SESSIONS
        r = small.client.post("/v1/completions", json={"prompt": "Hi", "stream": True, "max_tokens": 2},
                              headers={"X-Conversation-Id": "one-too-many"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable_error"
        assert "too many resumable streams" in r.json()["error"]["message"]
    finally:
        for c in clients:
            c.close()
        for cid in ids:
            small.client.delete(f"/v1/stream/{cid}")
    t0 = time.monotonic()
    while small.busy_slots() and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert small.busy_slots() == 0


def test_shutdown_ends_live_streams_and_their_readers(start_server, smollm2_path):
    s = Server(start_server(smollm2_path, "-c", "2048", "-np", "1"))
    gen = RawStream(s.port, "/v1/completions", {"prompt": "Hi", "stream": True, "max_tokens": 1000,
                                                "ignore_eos": True}, {"X-Conversation-Id": "at-exit"})
    gen.read_frames(1)
    reader = RawStream(s.port, "/v1/stream/at-exit", None)
    assert reader.status == 200
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGINT)
    # both responses end properly (the last chunk of chunked encoding) with the reason, and promptly
    last = json.loads(frames(gen.read_all())[-1][6:])
    assert last["error"]["code"] == 503 and "shutting down" in last["error"]["message"]
    assert reader.read_all() == gen.body
    assert s.proc.wait(15) == 0 and time.monotonic() - t0 < 10
