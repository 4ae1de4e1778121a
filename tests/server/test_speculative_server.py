"""Speculative decoding in the server (-md): the same replies as a server without a draft, fewer forwards.

qwen2.5-coder-0.5b drafts for itself here: its drafts are accepted almost always, so every round checks
several tokens and the test exercises acceptance, rollback and the stops inside a round.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from serverkit import sse_events

pytestmark = pytest.mark.slow

CODE = "def fib(n):\n    "
FLAGS = ("-np", "2", "-c", "1024")
NEAR_TIE = 1.0  # nats: where two concurrent replies may part from the alone reply (test_concurrency.py)


@pytest.fixture(scope="module")
def plain(start_server, qwen05_path):
    return start_server(qwen05_path, *FLAGS)


@pytest.fixture(scope="module")
def drafted(start_server, qwen05_path):
    return start_server(qwen05_path, *FLAGS, "-md", str(qwen05_path), "--metrics")


def _complete(server, **body) -> dict:
    with server.client() as c:
        r = c.post("/completion", json={"prompt": CODE, "n_predict": 32, "temperature": 0, **body})
        assert r.status_code == 200, r.text
        return r.json()


def test_greedy_completion_is_the_plain_servers(plain, drafted):
    want, got = _complete(plain), _complete(drafted)
    assert got["content"] == want["content"]
    assert got["tokens_predicted"] == want["tokens_predicted"] == 32
    t = got["timings"]
    assert 0 < t["draft_n_accepted"] <= t["draft_n"]
    assert "draft_n" not in want["timings"]


def test_stops_inside_a_round(plain, drafted):
    """A stop string, n_predict and end-of-generation inside a checked draft end the reply where the plain
    server ends it."""
    for body in ({"n_predict": 7}, {"stop": ["return"]}, {"prompt": "<|im_start|>user\nSay hi.<|im_end|>\n"
                                                          "<|im_start|>assistant\n", "n_predict": 64}):
        want, got = _complete(plain, **body), _complete(drafted, **body)
        assert (got["content"], got["stop_type"], got["tokens_predicted"]) == \
               (want["content"], want["stop_type"], want["tokens_predicted"]), body


def _chat(server, stream: bool) -> tuple[str, dict]:
    body = {"messages": [{"role": "user", "content": "Write a Python function that reverses a string."}],
            "max_tokens": 40, "temperature": 0, "stream": stream}
    with server.client() as c:
        if not stream:
            r = c.post("/v1/chat/completions", json=body).json()
            return r["choices"][0]["message"]["content"], r["timings"]
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            frames = [f for f in sse_events(r.iter_lines()) if f != "[DONE]"]
        text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])
        return text, next(f["timings"] for f in reversed(frames) if "timings" in f)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_is_the_plain_servers(plain, drafted, stream):
    (want, _), (got, timings) = _chat(plain, stream), _chat(drafted, stream)
    assert got == want
    assert timings["draft_n_accepted"] > 0


def test_seeded_sampling_is_the_plain_servers(plain, drafted):
    body = {"temperature": 0.8, "seed": 1234, "n_predict": 32}
    assert _complete(drafted, **body)["content"] == _complete(plain, **body)["content"]


def _parts_at_near_tie(alone: dict, got: list[int]) -> bool:
    """`got` equals the alone reply's tokens, or departs from them where the alone run's best two were close."""
    want = [e["id"] for e in alone["completion_probabilities"]]
    if got == want:
        return True
    k = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    top = alone["completion_probabilities"][min(k, len(want) - 1)]["top_logprobs"]
    return len(top) > 1 and top[0]["logprob"] - top[1]["logprob"] < NEAR_TIE


def test_two_slots_speculate_side_by_side(plain, drafted):
    prompts = [CODE, "class Stack:\n    def __init__(self):\n        "]
    alone = [_complete(plain, prompt=p, n_probs=2) for p in prompts]
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda p: _complete(drafted, prompt=p, return_tokens=True), prompts))
    for a, b in zip(alone, both):
        assert _parts_at_near_tie(a, b["tokens"]), (a["content"], b["content"])
        assert b["timings"]["draft_n_accepted"] > 0


def test_request_limits_slots_and_metrics(plain, drafted):
    assert "draft_n" not in _complete(drafted, **{"speculative.n_max": 0})["timings"]
    short = _complete(drafted, **{"speculative.n_max": 2, "n_predict": 16})
    assert short["content"] == _complete(plain, n_predict=16)["content"]
    assert short["generation_settings"]["speculative.n_max"] == 2
    with drafted.client() as c:
        assert c.post("/completion", json={"prompt": "x", "speculative.p_min": 2}).status_code == 400
        assert all(s["speculative"] for s in c.get("/slots").json())
        assert c.get("/props").json()["model_draft_path"].endswith(".gguf")
        assert "llamacpp:spec_decode_num_accepted_tokens_total" in c.get("/metrics").text
    with plain.client() as c:
        assert not any(s["speculative"] for s in c.get("/slots").json())


def test_incompatible_draft_stops_the_server(qwen05_path, smollm2_path):
    cmd = [sys.executable, "-m", "llamacpy", "server", "--port", "0", "-m", str(qwen05_path), "-md",
           str(smollm2_path), "-c", "256"]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    assert p.returncode == 1
    assert "cannot draft for" in p.stderr and "vocabularies must match" in p.stderr, p.stderr[-2000:]
