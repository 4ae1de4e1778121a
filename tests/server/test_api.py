"""The server end to end with the real default model: the `openai` package (sync and async, streamed and
not), llama-server's native routes, response shapes, and cancellation when a client leaves."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from openai import AsyncOpenAI, OpenAI
from serverkit import sse_events

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "Name three colors."}]
TIMINGS = {"cache_n", "prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_n",
           "predicted_ms", "predicted_per_token_ms", "predicted_per_second"}


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-np", "2", "-c", "2048", "--metrics", "-a", "smol,smol-alias")


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused")


@pytest.fixture(scope="module")
def http(server):
    with server.client() as c:
        yield c


def test_chat_streamed_text_equals_whole_text(client):
    whole = client.chat.completions.create(model="smol", messages=CHAT, temperature=0, max_tokens=24)
    assert whole.object == "chat.completion" and whole.model == "smol"
    text = whole.choices[0].message.content
    assert "Red" in text or "red" in text
    chunks = list(client.chat.completions.create(model="smol", messages=CHAT, temperature=0, max_tokens=24,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_async_client_streams_with_usage(server):
    async def run():
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused")
        kw = {"model": "smol", "messages": CHAT, "temperature": 0, "max_tokens": 16}
        whole = await client.chat.completions.create(**kw)
        stream = await client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        await client.close()
        return whole, chunks

    whole, chunks = asyncio.run(run())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_text_completions_with_a_stop_string(client):
    kw = {"model": "smol", "prompt": "1, 2, 3, 4,", "temperature": 0, "max_tokens": 24, "stop": [" 7"]}
    whole = client.completions.create(**kw)
    assert whole.choices[0].text == " 5, 6," and whole.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == " 5, 6,"
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_models_list_names_the_alias(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["smol"] and models[0].owned_by == "llamacpp"
    assert models[0].model_extra["aliases"] == ["smol", "smol-alias"]  # all of them, as llama-server
    assert models[0].model_extra["meta"]["n_vocab"] == 49152


def test_chat_logprobs_spell_the_text(client):
    r = client.chat.completions.create(model="smol", messages=CHAT, temperature=0, max_tokens=12, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token  # greedy: the best one
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
        assert bytes(t.bytes).decode() == t.token and t.logprob <= 0


def test_seeded_sampling_repeats(client):
    kw = {"model": "smol", "prompt": "The weather today", "temperature": 1.0, "max_tokens": 16, "seed": 7}
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text


def test_native_completion_whole_and_streamed(http):
    body = {"prompt": "The capital of France is", "n_predict": 8, "temperature": 0, "n_probs": 2,
            "return_tokens": True}
    whole = http.post("/completion", json=body).json()
    assert whole["content"].startswith(" Paris.") and whole["stop"] is True
    assert whole["stop_type"] == "limit" and whole["tokens_predicted"] == 8 == len(whole["tokens"])
    assert whole["tokens_evaluated"] == 5 and set(whole["timings"]) == TIMINGS
    assert whole["generation_settings"]["n_predict"] == 8 and len(whole["completion_probabilities"]) == 8
    assert http.post("/detokenize", json={"tokens": whole["tokens"]}).json()["content"] == whole["content"]
    with http.stream("POST", "/completions", json={**body, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = sse_events(r.iter_lines())
    assert "[DONE]" not in frames  # the native stream ends with its "stop": true frame
    assert all(f["stop"] is False for f in frames[:-1]) and frames[-1]["stop"] is True
    assert "".join(f["content"] for f in frames) == whole["content"]
    assert sum(len(f["tokens"]) for f in frames) == 8 and frames[-1]["timings"]["predicted_n"] == 8


def test_native_stop_word_is_reported(http):
    r = http.post("/completion", json={"prompt": "1, 2, 3, 4,", "n_predict": 24, "temperature": 0,
                                      "stop": [" 9", " 7"]}).json()
    assert r["content"] == " 5, 6," and r["stop_type"] == "word" and r["stopping_word"] == " 7"


def test_oai_stream_framing(http):
    body = {"messages": CHAT, "temperature": 0, "max_tokens": 8, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.headers["x-accel-buffering"] == "no"
        raw = r.read().decode()
    assert raw.endswith("data: [DONE]\n\n") and raw.startswith("data: {")
    events = sse_events(raw.split("\n"))
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "length" and last["choices"][0]["delta"] == {}
    assert set(last["timings"]) == TIMINGS and last["timings"]["predicted_n"] == 8
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])


def test_repeated_prompt_reuses_the_cache(http):
    body = {"prompt": "Once upon a time, in a land far away,", "n_predict": 4, "temperature": 0}
    first = http.post("/completion", json=body).json()
    second = http.post("/completion", json=body).json()
    assert second["content"] == first["content"]
    assert second["timings"]["cache_n"] == second["tokens_evaluated"] and second["timings"]["prompt_n"] == 0
    longer = http.post("/completion", json={**body, "prompt": body["prompt"] + " there lived"}).json()
    assert longer["timings"]["cache_n"] >= first["tokens_evaluated"]


def test_token_utilities(http):
    ids = http.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert ids == [19556, 905]
    pieces = http.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()["tokens"]
    assert pieces == [{"id": 19556, "piece": "Hello"}, {"id": 905, "piece": " world"}]
    assert http.post("/detokenize", json={"tokens": ids}).json() == {"content": "Hello world"}
    special = http.post("/tokenize", json={"content": "<|im_start|>hi"}).json()["tokens"]
    assert special[0] == 1  # parse_special defaults to true
    prompt = http.post("/apply-template", json={"messages": CHAT}).json()["prompt"]
    assert prompt.endswith("<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n")


def test_props_slots_metrics(http):
    props = http.get("/props").json()
    assert props["total_slots"] == 2 and props["default_generation_settings"]["n_ctx"] == 1024
    assert props["model_alias"] == "smol" and "im_start" in props["chat_template"]
    assert props["endpoint_metrics"] is True and props["endpoint_slots"] is True
    slots = http.get("/slots").json()
    assert [s["id"] for s in slots] == [0, 1] and all(s["n_ctx"] == 1024 for s in slots)
    assert all(not s["is_processing"] and "id_task" not in s for s in slots)  # as llama-server: no task yet
    metrics = http.get("/metrics").text
    assert "# TYPE llamacpp:prompt_tokens_total counter" in metrics
    for name in ("tokens_predicted_total", "requests_processing", "requests_deferred", "n_decode_total"):
        assert f"\nllamacpp:{name} " in metrics
    assert http.get("/health").json() == {"status": "ok"} and http.get("/v1/health").status_code == 200


def _metric(http, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f"llamacpp:{name} "):
            return float(line.split()[1])
    raise KeyError(name)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_a_client_that_leaves_cancels_its_generation(server, http, stream):
    """Start a long generation, hang up: the slot must be free almost at once."""
    body = (b'{"messages":[{"role":"user","content":"Write a very long story."}],"max_tokens":900,'
            b'"temperature":0,"stream":%s}' % (b"true" if stream else b"false"))
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        if stream:
            received = b""
            while received.count(b"data: ") < 3:
                received += sock.recv(4096)
        else:
            while not _metric(http, "requests_processing"):
                time.sleep(0.01)
            time.sleep(0.3)
        busy = [s for s in http.get("/slots").json() if s["is_processing"]]
        assert len(busy) == 1
        before = _metric(http, "tokens_predicted_total")
    t0 = time.monotonic()
    while any(s["is_processing"] for s in http.get("/slots").json()):
        # the criterion is the token count below; the clock only bounds a hang (a decode step takes
        # ~20 ms on a quiet machine but over a second on a loaded one)
        assert time.monotonic() - t0 < 60.0, "the slot was not freed after the client left"
        time.sleep(0.01)
    assert _metric(http, "tokens_predicted_total") - before < 30  # far from the 900 asked


def test_prompt_longer_than_the_context_is_refused(http):
    r = http.post("/completion", json={"prompt": "word " * 1500, "n_predict": 4})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "exceed_context_size_error" and err["n_ctx"] == 1024 and err["n_prompt_tokens"] > 1024
    assert err["code"] == 400


def test_continue_final_message_as_llama_server(http):
    msgs = [*CHAT, {"role": "assistant", "content": "Red, gr"}]
    base = {"messages": msgs, "max_tokens": 1, "temperature": 0}
    r = http.post("/v1/chat/completions", json={**base, "add_generation_prompt": True, "continue_final_message": True})
    assert r.status_code == 400 and "Cannot set both" in r.json()["error"]["message"]
    explicit = http.post("/v1/chat/completions", json={**base, "add_generation_prompt": False,
                                                       "continue_final_message": True, "verbose": True}).json()
    implicit = http.post("/v1/chat/completions", json={**base, "verbose": True}).json()
    assert explicit["__verbose"]["prompt"] == implicit["__verbose"]["prompt"]
    assert explicit["__verbose"]["prompt"].endswith("<|im_start|>assistant\nRed, gr")
    assert "__verbose" not in http.post("/v1/chat/completions", json=base).json()


def test_json_object_without_schema_is_an_object(http):
    r = http.post("/v1/chat/completions", json={"messages": CHAT, "max_tokens": 12, "temperature": 0,
                                                "response_format": {"type": "json_object"}}).json()
    assert r["choices"][0]["message"]["content"].startswith("{")


def test_post_sampling_probs_as_llama_server(http):
    body = {"prompt": "Today was the day. Today I would finally become a", "n_probs": 10, "temperature": 1.0,
            "n_predict": 3, "post_sampling_probs": True, "seed": 1}
    probs = http.post("/completion", json=body).json()["completion_probabilities"]
    assert len(probs) == 3
    for tok in probs:
        assert 0.0 < tok["prob"] <= 1.0 and "logprob" not in tok
        tops = [p["prob"] for p in tok["top_probs"]]
        assert tops == sorted(tops, reverse=True) and all(0.0 < p <= 1.0 for p in tops)
        assert tok["prob"] in tops or tok["prob"] < tops[-1]
        assert len(tops) == 10 or sum(tops) == pytest.approx(1.0, abs=1e-5)  # fewer only when they are all
    greedy = http.post("/completion", json={**body, "temperature": 0}).json()["completion_probabilities"]
    assert all(t["prob"] == 1.0 and [p["prob"] for p in t["top_probs"]] == [1.0] for t in greedy)
    raw = http.post("/completion", json={**body, "post_sampling_probs": False}).json()["completion_probabilities"]
    assert all(t["logprob"] <= 0 and "top_logprobs" in t for t in raw)


def test_ignore_eos_bans_the_end_tokens_as_a_logit_bias(http):
    r = http.post("/completion", json={"prompt": "Hi", "n_predict": 2, "ignore_eos": True}).json()
    bias = r["generation_settings"]["logit_bias"]
    assert bias and all(b["bias"] is None for b in bias)  # -inf is null in JSON, as llama-server
    r = http.post("/completion", json={"prompt": "Hi", "n_predict": 2, "logit_bias": [[15, 1.5]]}).json()
    assert r["generation_settings"]["logit_bias"] == [{"bias": 1.5, "token": 15}]


def test_cors_and_metrics_headers_as_llama_server(server):
    # llama-server's header casing on the wire (clients that copy headers into a dict see it)
    import socket

    def raw(request: bytes) -> str:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(request)
            return s.recv(65536).decode("latin-1")

    pre = raw(b"OPTIONS /completions HTTP/1.1\r\nHost: x\r\nOrigin: web.mydomain.fr\r\n"
              b"Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n")
    assert "Access-Control-Allow-Origin: web.mydomain.fr\r\n" in pre  # credentials on, origins *: echoed
    assert "Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\n" in pre
    assert "Access-Control-Allow-Credentials: true\r\n" in pre
    metrics = raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert "Process-Start-Time-Unix: " in metrics


def test_metrics_count_cached_prompt_tokens(http):
    body = {"prompt": "The cached prompt metric counts this prompt when it comes again.", "n_predict": 1,
            "id_slot": 0}
    http.post("/completion", json=body)
    before = _metric(http, "prompt_tokens_cached_total")
    cached = http.post("/completion", json=body).json()["timings"]["cache_n"]
    assert cached > 0 and _metric(http, "prompt_tokens_cached_total") - before == cached
