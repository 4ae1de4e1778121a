"""Anthropic's Messages API end to end with the `anthropic` package: text (whole and streamed) on the default
model, stop reasons, token counting against the chat route, Anthropic-shaped errors with an API key sent as
`x-api-key`, a resumable stream, and a tool-use round trip on qwen2.5-coder-0.5b."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from openai import OpenAI

pytestmark = pytest.mark.slow

KEY = "test-key-123"
ASK = [{"role": "user", "content": "Name three colors."}]
# this client has no sampling parameters (Anthropic's newest API dropped them); the server still reads them
GREEDY = {"model": "smol", "max_tokens": 24, "extra_body": {"temperature": 0}}
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city",
           "input_schema": {"type": "object", "required": ["city", "unit"],
                            "properties": {"city": {"type": "string", "maxLength": 40},
                                           "unit": {"enum": ["celsius", "fahrenheit"]}}}}


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-c", "2048", "-np", "2", "--api-key", KEY)


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def http(server):
    with server.client(timeout=120, headers={"x-api-key": KEY}) as c:
        yield c


@pytest.fixture(scope="module")
def chat(server):
    """The same request on the chat route, greedy: what the Messages API must answer."""
    oai = OpenAI(base_url=server.url + "/v1", api_key=KEY, timeout=120)
    return oai.chat.completions.create(model="smol", messages=ASK, temperature=0, max_tokens=24)


def test_message_equals_the_chat_completion(client, chat):
    m = client.messages.create(messages=ASK, **GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    (block,) = m.content
    assert block.type == "text" and block.text == chat.choices[0].message.content
    assert m.stop_reason == {"stop": "end_turn", "length": "max_tokens"}[chat.choices[0].finish_reason]
    assert m.stop_sequence is None
    assert m.usage.input_tokens + m.usage.cache_read_input_tokens == chat.usage.prompt_tokens
    assert m.usage.output_tokens == chat.usage.completion_tokens


def test_stream_text_and_final_message(client, chat):
    with client.messages.stream(messages=ASK, **GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == chat.choices[0].message.content
    assert [b.text for b in final.content] == [text]
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens == chat.usage.completion_tokens


def test_stream_frames_are_anthropics(http):
    body = {"messages": ASK, "stream": True, "model": "smol", "max_tokens": 24, "temperature": 0}
    with http.stream("POST", "/v1/messages", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    frames = [f for f in raw.split("\n\n") if f]
    names = [f.split("\n")[0] for f in frames]
    assert names[0] == "event: message_start" and names[-2:] == ["event: message_delta", "event: message_stop"]
    assert names[1] == "event: content_block_start" and "event: content_block_stop" in names
    assert "[DONE]" not in raw


def test_max_tokens_and_stop_sequence_reasons(client, chat):
    m = client.messages.create(messages=ASK, model="smol", max_tokens=3, extra_body={"temperature": 0})
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3
    text = chat.choices[0].message.content
    word = text.split()[2]  # a word in the middle of the greedy reply
    m = client.messages.create(messages=ASK, stop_sequences=["zzz", word], **GREEDY)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == word
    assert m.content[0].text == text[:text.index(word)]


def test_count_tokens_equals_the_chat_prompt(client, http):
    system = "You are terse."
    n = client.messages.count_tokens(model="smol", system=system, messages=ASK).input_tokens
    chat = [{"role": "system", "content": system}] + ASK
    assert http.post("/v1/chat/completions/input_tokens", json={"messages": chat}).json() == {
        "object": "response.input_tokens", "input_tokens": n}
    as_blocks = client.messages.count_tokens(model="smol", system=[{"type": "text", "text": system}],
                                             messages=[{"role": "user", "content": [
                                                 {"type": "text", "text": ASK[0]["content"]}]}])
    assert as_blocks.input_tokens == n
    m = client.messages.create(system=system, messages=ASK, **GREEDY)
    assert m.usage.input_tokens + m.usage.cache_read_input_tokens == n
    bare = client.messages.count_tokens(model="smol", messages=ASK).input_tokens
    assert bare != n and bare == http.post("/v1/chat/completions/input_tokens", json={"messages": ASK}).json()[
        "input_tokens"]


def test_errors_have_anthropics_shape_and_the_server_goes_on(client, http, server):
    r = http.post("/v1/messages", json={"model": "smol", "messages": ASK})  # no max_tokens
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "'max_tokens' is required"}}
    r = http.post("/v1/messages", content=b'{"model": "smol", "messages": [', headers={"content-type": "x"})
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["message"].startswith("invalid JSON")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    r = http.post("/v1/messages", json={"model": "smol", "max_tokens": 4, "messages": [
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]})
    assert r.status_code == 500 and r.json()["error"]["message"].startswith("image input is not supported")
    r = http.post("/v1/messages", json={"model": "smol", "max_tokens": 2, "messages": []})  # rendered as it is
    assert r.status_code == 200 and r.json()["type"] == "message"
    with pytest.raises(anthropic.BadRequestError, match="tool type 'web_search_20250305' is not supported"):
        client.messages.create(messages=ASK, tools=[{"type": "web_search_20250305", "name": "web_search"}],
                               **GREEDY)
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(messages=ASK, model="smol", max_tokens=0)
    assert e.value.body["error"]["type"] == "invalid_request_error"
    wrong = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(messages=ASK, **GREEDY)
    r = httpx.post(server.url + "/v1/messages", json={"messages": ASK, "max_tokens": 2})
    assert r.status_code == 401 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "authentication_error"
    assert client.messages.create(messages=ASK, model="smol", max_tokens=2).usage.output_tokens == 2


def test_too_long_prompt_is_anthropics_wording(client):
    with pytest.raises(anthropic.BadRequestError, match=r"prompt is too long: \d+ tokens > \d+ maximum"):
        client.messages.create(messages=[{"role": "user", "content": "word " * 3000}], **GREEDY)


def test_resumable_stream_replays_the_same_events(http):
    body = {"messages": ASK, "stream": True, "model": "smol", "max_tokens": 24, "temperature": 0}
    with http.stream("POST", "/v1/messages", json=body, headers={"X-Conversation-Id": "anthropic-1"}) as r:
        assert r.status_code == 200
        live = r.read()
    replay = http.get("/v1/stream/anthropic-1").content
    assert replay == live and live.rstrip().endswith(b'data: {"type":"message_stop"}')
    assert http.get("/v1/stream/anthropic-1", params={"from": 10}).content == live[10:]


# -- tool use on a model that calls tools -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen(start_server, qwen05_path):
    server = start_server(qwen05_path, "-c", "2048")
    return anthropic.Anthropic(base_url=server.url, api_key="unused", timeout=180, max_retries=0)


QWEN = {"model": "qwen", "max_tokens": 80, "extra_body": {"temperature": 0}}
WEATHER_ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def test_tool_use_round_trip(qwen):
    choice = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    m = qwen.messages.create(messages=WEATHER_ASK, tools=[WEATHER], tool_choice=choice, **QWEN)
    assert m.stop_reason == "tool_use"
    (use,) = [b for b in m.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.id.startswith("toolu_")
    assert set(use.input) == {"city", "unit"} and "paris" in use.input["city"].lower()
    follow = WEATHER_ASK + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": '{"temperature": 21, "unit": "celsius", "sky": "sunny"}'}]}]
    answer = qwen.messages.create(messages=follow, tools=[WEATHER], **QWEN)
    assert answer.stop_reason == "end_turn"
    assert [b.type for b in answer.content] == ["text"] and "21" in answer.content[0].text


def test_tool_use_streamed_equals_whole(qwen):
    kw = {"messages": WEATHER_ASK, "tools": [WEATHER], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}, **QWEN}
    whole = qwen.messages.create(**kw)
    with qwen.messages.stream(**kw) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert "input_json" in events
    assert final.stop_reason == whole.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in final.content if b.type == "tool_use"] == \
        [(b.type, b.name, b.input) for b in whole.content if b.type == "tool_use"]
