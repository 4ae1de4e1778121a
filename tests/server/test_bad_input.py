"""Malformed and hostile requests: each gets llama-server's error shape and status, the server keeps
answering, and a generation in flight meanwhile is not disturbed."""

from __future__ import annotations

import threading

import httpx
import pytest
from serverkit import sse_events

pytestmark = pytest.mark.slow

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
BIG = 17 << 20  # over the 16 MiB body limit


def _huge_chunks():
    for _ in range(BIG // (1 << 20)):
        yield b"x" * (1 << 20)


# (name, method, path, request kwargs, expected status, expected error type)
CASES = [
    ("malformed JSON", "POST", "/v1/chat/completions", {"content": b'{"messages": ['}, 400, "invalid_request_error"),
    ("empty body", "POST", "/v1/chat/completions", {"content": b""}, 400, "invalid_request_error"),
    ("JSON array body", "POST", "/completion", {"json": [1, 2, 3]}, 400, "invalid_request_error"),
    ("invalid UTF-8", "POST", "/completion", {"content": b'{"prompt": "\xff\xfe\xfd"}'}, 400, "invalid_request_error"),
    ("NaN literal", "POST", "/completion", {"content": b'{"prompt": "a", "temperature": NaN}'}, 400,
     "invalid_request_error"),
    ("deep nesting", "POST", "/completion", {"content": b"[" * 200000 + b"]" * 200000}, 400, "invalid_request_error"),
    ("body over the limit", "POST", "/completion", {"content": b"x" * BIG}, 413, "invalid_request_error"),
    ("chunked body over the limit", "POST", "/completion", {"content": _huge_chunks}, 413, "invalid_request_error"),
    ("huge prompt", "POST", "/completion", {"json": {"prompt": "lorem ipsum " * 200000}}, 400,
     "exceed_context_size_error"),
    ("messages not an array", "POST", "/v1/chat/completions", {"json": {"messages": "hi"}}, 400,
     "invalid_request_error"),
    ("messages not an array", "POST", "/v1/chat/completions", {"json": {"messages": {"role": "user"}}}, 400,
     "invalid_request_error"),
    ("message without role", "POST", "/v1/chat/completions", {"json": {"messages": [{"content": "x"}]}}, 400,
     "invalid_request_error"),
    ("role not a string", "POST", "/v1/chat/completions", {"json": {"messages": [{"role": 7, "content": "x"}]}},
     400, "invalid_request_error"),
    ("user message without content", "POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user"}]}},
     400, "invalid_request_error"),
    ("image part", "POST", "/v1/chat/completions",
     {"json": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}},
     500, "server_error"),  # llama-server's status for an image without --mmproj
    ("max_tokens a string", "POST", "/v1/chat/completions", {"json": {**CHAT, "max_tokens": "10"}}, 400,
     "invalid_request_error"),
    ("max_tokens negative", "POST", "/v1/chat/completions", {"json": {**CHAT, "max_tokens": -5}}, 400,
     "invalid_request_error"),
    ("temperature a string", "POST", "/v1/chat/completions", {"json": {**CHAT, "temperature": "hot"}}, 400,
     "invalid_request_error"),
    ("top_p negative", "POST", "/v1/chat/completions", {"json": {**CHAT, "top_p": -0.5}}, 400,
     "invalid_request_error"),
    ("seed not an integer", "POST", "/completion", {"json": {"prompt": "a", "seed": 1.5}}, 400,
     "invalid_request_error"),
    ("stream a string", "POST", "/v1/chat/completions", {"json": {**CHAT, "stream": "yes"}}, 400,
     "invalid_request_error"),
    ("stop a number", "POST", "/v1/completions", {"json": {"prompt": "a", "stop": 3}}, 400, "invalid_request_error"),
    ("n_probs negative", "POST", "/completion", {"json": {"prompt": "a", "n_probs": -1}}, 400,
     "invalid_request_error"),
    ("n_probs huge", "POST", "/completion", {"json": {"prompt": "a", "n_probs": 10**9}}, 400,
     "invalid_request_error"),
    ("min_p above 1", "POST", "/completion", {"json": {"prompt": "a", "min_p": 5}}, 400, "invalid_request_error"),
    ("prompt a number", "POST", "/completion", {"json": {"prompt": 42}}, 400, "invalid_request_error"),
    ("token id out of range", "POST", "/completion", {"json": {"prompt": [1, 99999999]}}, 400,
     "invalid_request_error"),
    ("negative token id", "POST", "/completion", {"json": {"prompt": [-1]}}, 400, "invalid_request_error"),
    ("top_logprobs without logprobs", "POST", "/v1/chat/completions", {"json": {**CHAT, "top_logprobs": 2}}, 400,
     "invalid_request_error"),
    ("too many completions", "POST", "/v1/chat/completions", {"json": {**CHAT, "n": 100}}, 400,
     "invalid_request_error"),
    ("logit_bias not a map", "POST", "/completion", {"json": {"prompt": "a", "logit_bias": "abc"}}, 400,
     "invalid_request_error"),
    ("slot that does not exist", "POST", "/completion", {"json": {"prompt": "a", "id_slot": 9}}, 400,
     "invalid_request_error"),
    ("response_format invalid json_schema", "POST", "/v1/chat/completions",
     {"json": {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "x"}}}}}, 400,
     "invalid_request_error"),
    ("response_format unknown", "POST", "/v1/chat/completions", {"json": {**CHAT, "response_format": {"type": "x"}}},
     400, "invalid_request_error"),
    ("detokenize tokens not an array", "POST", "/detokenize", {"json": {"tokens": "1 2"}}, 400,
     "invalid_request_error"),
    ("unknown route", "GET", "/v2/nothing", {}, 404, "not_found_error"),
    ("wrong method", "GET", "/v1/chat/completions", {}, 404, "not_found_error"),
    ("missing API key", "POST", "/v1/chat/completions", {"json": CHAT, "headers": {"Authorization": ""}}, 401,
     "authentication_error"),
    ("wrong API key", "GET", "/props", {"headers": {"Authorization": "Bearer nope"}}, 401, "authentication_error"),
    ("metrics not enabled", "GET", "/metrics", {}, 501, "not_supported_error"),
]


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-np", "2", "-c", "1024", "--api-key", KEY)


@pytest.fixture(scope="module")
def http(server):
    with server.client(headers=AUTH) as c:
        yield c


def _send(http: httpx.Client, method: str, path: str, kw: dict) -> httpx.Response:
    kw = dict(kw)
    if callable(kw.get("content")):
        kw["content"] = kw["content"]()
    return http.request(method, path, **kw)


@pytest.mark.parametrize("name, method, path, kw, status, kind", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_clear_error(http, name, method, path, kw, status, kind):
    r = _send(http, method, path, kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == kind and error["code"] == status and error["message"]
    assert http.get("/health").json() == {"status": "ok"}


def test_at_least_twenty_kinds():
    assert len(CASES) >= 20


def test_odd_but_valid_input_is_served(http):
    # unknown fields are ignored; a lone surrogate escape is replaced like llama.cpp replaces bad UTF-8
    r = http.post("/completion", content=b'{"prompt": "a \\ud800 b", "n_predict": 2, "frobnicate": {"x": [1]}}')
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 2
    r = http.post("/v1/chat/completions", json={**CHAT, "user": "me", "max_tokens": -1, "n_predict": 2})
    assert r.status_code == 200


def test_api_key_forms_and_public_routes(server):
    with server.client() as c:
        assert c.get("/health").status_code == 200 and c.get("/v1/models").status_code == 200
        assert c.get("/props").status_code == 401
        assert c.get("/props", headers={"Authorization": KEY}).status_code == 200  # "Bearer " is optional
        assert c.get("/props", headers={"X-Api-Key": KEY}).status_code == 200
        assert c.options("/v1/chat/completions").status_code == 200  # CORS pre-flight needs no key
        r = c.get("/props")
        assert r.json() == {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}


def test_bad_requests_do_not_disturb_a_generation_in_flight(http):
    body = {"prompt": "The history of the Roman Empire", "n_predict": 48, "temperature": 0}
    alone = http.post("/completion", json=body).json()["content"]
    frames: list = []

    def stream() -> None:
        with http.stream("POST", "/completion", json={**body, "stream": True}) as r:
            frames.extend(sse_events(r.iter_lines()))

    t = threading.Thread(target=stream)
    t.start()
    for _, method, path, kw, status, _ in CASES:
        assert _send(http, method, path, kw).status_code == status
    t.join(60)
    assert frames and frames[-1]["stop"] is True
    assert "".join(f["content"] for f in frames) == alone
