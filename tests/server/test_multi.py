"""Several completions in one request: `n` > 1 and several prompts, on the OpenAI and native routes, whole
and streamed (chunks of all choices interleaved, each naming its index), generated side by side on the
slots; too many is a 400, and a client leaving cancels all of them."""

from __future__ import annotations

import socket
import time

import pytest
from openai import BadRequestError, OpenAI
from serverkit import sse_events

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "Write a short poem about the sea."}]
PROMPTS = ["1, 2, 3, 4,", "The capital of France is"]


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-np", "4", "-c", "2048", "--metrics")


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused")


@pytest.fixture(scope="module")
def http(server):
    with server.client() as c:
        yield c


def test_n_choices_are_independent_samples(client):
    r = client.chat.completions.create(model="m", messages=CHAT, temperature=0.8, max_tokens=16, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert all(texts) and len(set(texts)) > 1, texts  # random seeds: different samples
    assert 3 <= r.usage.completion_tokens <= 48
    assert r.usage.prompt_tokens % 3 == 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_several_prompts_answer_in_order_like_single_requests(client):
    kw = {"model": "m", "temperature": 0, "max_tokens": 8}
    alone = [client.completions.create(prompt=p, **kw).choices[0] for p in PROMPTS]
    r = client.completions.create(prompt=PROMPTS, **kw)
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.text for c in r.choices] == [c.text for c in alone]
    assert [c.finish_reason for c in r.choices] == [c.finish_reason for c in alone]
    assert r.usage.completion_tokens == 16


def test_token_prompts_and_n_index_as_openai_does(http):
    tokens = [http.post("/tokenize", json={"content": p}).json()["tokens"] for p in PROMPTS]
    r = http.post("/v1/completions", json={"prompt": tokens, "n": 2, "temperature": 0, "max_tokens": 6}).json()
    texts = [c["text"] for c in r["choices"]]
    assert [c["index"] for c in r["choices"]] == [0, 1, 2, 3]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]  # prompt i, choice j: 2i + j


def _by_index(events: list) -> dict[int, str]:
    out: dict[int, str] = {}
    for e in events:
        for c in e["choices"]:
            out[c["index"]] = out.get(c["index"], "") + (c["delta"].get("content") or "")
    return out


def test_streamed_n_reassembles_to_the_whole_reply(http):
    body = {"messages": CHAT, "temperature": 0, "max_tokens": 12, "n": 2}
    whole = http.post("/v1/chat/completions", json=body).json()
    with http.stream("POST", "/v1/chat/completions",
                     json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        events = sse_events(r.iter_lines())
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    events = events[:-1]
    usage = events[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"] == 24
    assert usage["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    assert all(e["choices"] for e in events[:-1])  # one usage chunk only, at the end
    texts = _by_index(events[:-1])
    assert texts == {c["index"]: c["message"]["content"] for c in whole["choices"]}
    finishes = {c["index"]: c["finish_reason"] for e in events[:-1] for c in e["choices"] if c["finish_reason"]}
    assert finishes == {0: "length", 1: "length"}


def test_streamed_prompts_with_a_conversation_id(http):
    body = {"prompt": PROMPTS, "temperature": 0, "max_tokens": 6}
    whole = http.post("/v1/completions", json=body).json()
    r = http.post("/v1/completions", json={**body, "stream": True}, headers={"X-Conversation-Id": "multi-1"})
    events = sse_events(r.text.split("\n"))
    assert events[-1] == "[DONE]"
    texts: dict[int, str] = {}
    for e in events[:-1]:
        for c in e["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + c["text"]
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    replay = http.get("/v1/stream/multi-1")
    assert replay.text == r.text


def test_native_several_prompts_give_an_array(http):
    body = {"prompt": PROMPTS, "n_predict": 6, "temperature": 0}
    out = http.post("/completion", json=body).json()
    assert isinstance(out, list) and [o["index"] for o in out] == [0, 1]
    assert [o["prompt"] for o in out] == PROMPTS
    single = http.post("/completion", json={**body, "prompt": PROMPTS[1]}).json()
    assert isinstance(single, dict) and out[1]["content"] == single["content"]
    with http.stream("POST", "/completion", json={**body, "stream": True}) as r:
        frames = sse_events(r.iter_lines())
    assert "[DONE]" not in frames
    for i in (0, 1):
        mine = [f for f in frames if f["index"] == i]
        assert mine[-1]["stop"] is True and "".join(f["content"] for f in mine) == out[i]["content"]


def test_too_many_completions_is_a_400(client, http):
    with pytest.raises(BadRequestError):
        client.chat.completions.create(model="m", messages=CHAT, max_tokens=4, n=17)
    r = http.post("/v1/completions", json={"prompt": PROMPTS * 3, "n": 3, "max_tokens": 2})
    assert r.status_code == 400 and "too many completions" in r.json()["error"]["message"]
    assert http.post("/completion", json={"prompt": "a", "n_cmpl": 0}).status_code == 400
    assert http.get("/health").json() == {"status": "ok"}


def _busy(http) -> int:
    text = http.get("/metrics").text
    return int(float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("llamacpp:requests_processing"))))


def test_client_leaving_cancels_every_choice(server, http):
    body = (b'{"prompt": "Once upon a time", "n": 3, "max_tokens": 4000, "ignore_eos": true, "stream": true}')
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        s.recv(4096)
        deadline = time.time() + 30
        while _busy(http) < 3 and time.time() < deadline:
            time.sleep(0.1)
        assert _busy(http) == 3
    deadline = time.time() + 30
    while _busy(http) and time.time() < deadline:
        time.sleep(0.1)
    assert _busy(http) == 0
    r = http.post("/v1/completions", json={"prompt": PROMPTS[0], "temperature": 0, "max_tokens": 4})
    assert r.status_code == 200 and r.json()["choices"][0]["text"]
