"""Thinking replies split as llama-server does (--reasoning-format): chat completions whole and streamed,
Anthropic thinking blocks, Responses reasoning items. The reply is forced by a grammar, the thinking opened by
the template (as DeepSeek-R1's ends its generation prompt with "<think>\\n")."""

from __future__ import annotations

import json

import httpx
import pytest
from serverkit import sse_events

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n"
            "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
            "{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
GRAMMAR = 'root ::= "Two and two. " "</think>" "\\n\\n" "Four."'
ASK = {"messages": [{"role": "user", "content": "2+2?"}], "grammar": GRAMMAR, "max_tokens": 40, "temperature": 0}


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-c", "1024", "-np", "1", "--chat-template", TEMPLATE)


def test_chat_whole_and_streamed(server):
    msg = httpx.post(f"{server.url}/v1/chat/completions", json=ASK, timeout=60).json()["choices"][0]["message"]
    assert (msg["reasoning_content"], msg["content"]) == ("Two and two.", "Four.")
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**ASK, "stream": True}, timeout=60) as r:
        events = sse_events(r.iter_lines())
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Two and two."
    assert "".join(d.get("content") or "" for d in deltas) == "Four."
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all("reasoning_content" not in d for d in deltas[first_content:])  # thoughts come first


@pytest.mark.parametrize("fmt, reasoning, content", [
    ("none", None, "Two and two. </think>\n\nFour."),
    ("deepseek-legacy", "Two and two.", "<think>Two and two. </think>\n\nFour."),
])
def test_reasoning_format_per_request(server, fmt, reasoning, content):
    body = {**ASK, "reasoning_format": fmt}
    msg = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0]["message"]
    assert (msg.get("reasoning_content"), msg["content"]) == (reasoning, content)
    bad = httpx.post(f"{server.url}/v1/chat/completions", json={**ASK, "reasoning_format": "nope"})
    assert bad.status_code == 400 and "reasoning_format" in bad.json()["error"]["message"]


def test_anthropic_thinking_blocks(server):
    """Anthropic's route takes no grammar (as llama-server's): the model thinks freely, never closing the thought
    in 12 tokens, so all of it is thinking: the same as chat completions gives for the same greedy request."""
    chat = {"messages": ASK["messages"], "max_tokens": 12, "temperature": 0}
    msg = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=60).json()["choices"][0]["message"]
    assert msg["reasoning_content"] and msg["content"] == ""
    body = {"model": "m", "max_tokens": 12, "messages": ASK["messages"], "temperature": 0}
    r = httpx.post(f"{server.url}/v1/messages", json=body, timeout=60).json()
    assert r["content"] == [{"type": "thinking", "thinking": msg["reasoning_content"], "signature": ""}]
    with httpx.stream("POST", f"{server.url}/v1/messages", json={**body, "stream": True}, timeout=60) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]) for e in starts] == [(0, {"type": "thinking", "thinking": ""})]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == msg["reasoning_content"]
    assert deltas[-1] == {"type": "signature_delta", "signature": ""}  # before the block closes, as llama-server


def test_anthropic_thinking_history_reaches_the_template(server):
    msgs = [{"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "Sum it."},
                                              {"type": "text", "text": "Four."}]},
            {"role": "user", "content": "And 3+3?"}]
    with_thoughts = httpx.post(f"{server.url}/v1/messages/count_tokens", json={"model": "m", "messages": msgs})
    msgs[1]["content"] = msgs[1]["content"][1:]
    without = httpx.post(f"{server.url}/v1/messages/count_tokens", json={"model": "m", "messages": msgs})
    assert with_thoughts.json()["input_tokens"] > without.json()["input_tokens"]  # rendered as reasoning_content


def test_responses_reasoning_item(server):
    body = {"model": "m", "input": "2+2?", "grammar": GRAMMAR, "temperature": 0, "max_output_tokens": 40}
    r = httpx.post(f"{server.url}/v1/responses", json=body, timeout=60).json()
    kinds = [(o["type"], (o.get("content") or [{}])[0].get("text")) for o in r["output"]]
    assert kinds == [("reasoning", "Two and two."), ("message", "Four.")]
    with httpx.stream("POST", f"{server.url}/v1/responses", json={**body, "stream": True}, timeout=60) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta") == "Two and two."
    assert events[-1]["response"]["output"][0]["type"] == "reasoning"
