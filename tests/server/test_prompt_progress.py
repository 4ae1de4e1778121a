"""`return_progress` and `timings_per_token` on streams, as llama-server sends them: a prompt_progress frame when
the request gets its slot (processed == cache), then one after each prompt batch (the last with processed ==
total), before the first token; with timings_per_token every frame carries the timings so far."""

from __future__ import annotations

import itertools
import json

import pytest

pytestmark = pytest.mark.slow

PROMPT = "the quick brown fox jumps over the lazy dog " * 8


@pytest.fixture(scope="module")
def http(start_server, smollm2_path):
    server = start_server(smollm2_path, "-np", "1", "-c", "512", "-b", "16")
    with server.client(timeout=120) as c:
        yield c


def frames(http, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]


def check_progress(updates: list[dict], cached: bool) -> None:
    first, last = updates[0], updates[-1]
    assert first["total"] > 0 and first["cache"] == first["processed"]
    assert (first["cache"] > 0) == cached
    for a, b in itertools.pairwise(updates):
        assert (a["total"], a["cache"]) == (b["total"], b["cache"]) and b["processed"] > a["processed"]
    assert last["processed"] == last["total"]


def test_native_stream(http):
    out = frames(http, "/completion", {"prompt": PROMPT, "n_predict": 4, "return_progress": True,
                                       "timings_per_token": True, "cache_prompt": False})
    progress = [f for f in out if "prompt_progress" in f]
    updates = [f["prompt_progress"] for f in progress]
    check_progress(updates, cached=False)
    n_total = updates[0]["total"]
    assert len(updates) == 1 + -(-n_total // 16)  # the start, then one per batch of 16
    assert out[:len(progress)] == progress  # all before the first token
    assert all(f["content"] == "" and f["tokens"] == [] and f["tokens_evaluated"] == n_total for f in progress)
    first = progress[0]["timings"]
    assert first["prompt_n"] == 0 and first["prompt_ms"] == 0.0 and first["predicted_n"] == 0
    ms = [f["timings"]["prompt_ms"] for f in progress]
    assert ms == sorted(ms) and ms[-1] > 0
    assert [f["timings"]["prompt_n"] for f in progress][-1] == n_total
    assert all("timings" in f for f in out)  # every token frame too
    assert out[-1]["stop"] is True and out[-1]["timings"]["predicted_n"] == 4


def test_chat_stream_with_a_cached_prefix(http):
    body = {"messages": [{"role": "user", "content": "This is a test" * 10}], "max_tokens": 4,
            "return_progress": True}
    frames(http, "/v1/chat/completions", body)
    out = frames(http, "/v1/chat/completions", body)
    progress = [f for f in out if "prompt_progress" in f]
    check_progress([f["prompt_progress"] for f in progress], cached=True)
    assert all(f["choices"][0]["delta"] == {"role": "assistant", "content": None} for f in progress)
    assert "timings" not in progress[0]


def test_no_progress_unless_asked(http):
    assert not any("prompt_progress" in f for f in frames(http, "/completion", {"prompt": PROMPT, "n_predict": 2}))
    r = http.post("/completion", json={"prompt": PROMPT, "n_predict": 2, "return_progress": True})
    assert "prompt_progress" not in r.json()


def test_text_completions_and_responses(http):
    out = frames(http, "/v1/completions", {"prompt": PROMPT, "max_tokens": 2, "return_progress": True,
                                           "cache_prompt": False})
    progress = [f for f in out if "prompt_progress" in f]
    check_progress([f["prompt_progress"] for f in progress], cached=False)
    assert all(f["choices"][0]["text"] == "" for f in progress)
    with http.stream("POST", "/v1/responses", json={"input": PROMPT, "max_output_tokens": 2, "stream": True,
                                                    "return_progress": True, "cache_prompt": False,
                                                    "timings_per_token": True}) as r:
        data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [d["type"] for d in data]
    n_prompt = data[-1]["response"]["usage"]["input_tokens"]
    # llama-server's telemetry: an in_progress event per update (the start, each batch of 16) with its
    # prompt_progress, the timings on each piece's last event and on the final one
    assert kinds[0] == "response.created" and kinds[-1] == "response.incomplete"  # max_output_tokens
    updates = [d["prompt_progress"] for d in data if d["type"] == "response.in_progress"]
    assert len(updates) == kinds.count("response.in_progress") == 1 + -(-n_prompt // 16)
    check_progress(updates, cached=False)
    deltas = [d for d in data if d["type"] == "response.output_text.delta"]
    assert deltas and all("predicted_per_second" in d["timings"] for d in deltas)
    assert data[-1]["timings"]["predicted_n"] == 2
