"""OpenAI tool calling end to end on qwen2.5-coder-0.5b (Hermes `<tool_call>` template): forced calls
(`required`, a named function) parsed into `tool_calls`, streamed and not; a follow-up turn with the tool's
result; `tool_choice: none`; and the 400s (the server keeps serving)."""

from __future__ import annotations

import json

import pytest
from openai import BadRequestError, OpenAI

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "maxLength": 40},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current local time in a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string",
                                                                                  "maxLength": 40}}}}}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
GREEDY = {"temperature": 0, "max_tokens": 80}


@pytest.fixture(scope="module")
def server(start_server, qwen05_path):
    return start_server(qwen05_path, "-c", "2048")


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=180)


def check_weather_args(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"city", "unit"}
    assert isinstance(args["city"], str) and len(args["city"]) <= 40
    assert args["unit"] in ("celsius", "fahrenheit")
    return args


def test_required_gives_a_parsed_call(client):
    r = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], tool_choice="required",
                                       parallel_tool_calls=False, **GREEDY)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert "paris" in check_weather_args(call.function.arguments)["city"].lower()


def test_required_streamed_deltas_reassemble(client):
    stream = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], tool_choice="required",
                                            parallel_tool_calls=False, stream=True, **GREEDY)
    calls: dict[int, dict] = {}
    content, finish = "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for d in delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            if d.id:
                assert call["id"] is None and d.type == "function"  # id and type on the first delta only
                call["id"] = d.id
            if d.function is not None:
                call["name"] += d.function.name or ""
                call["arguments"] += d.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and content == ""
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    check_weather_args(calls[0]["arguments"])


def test_named_function_is_the_one_called(client):
    r = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER, TIME],
                                       tool_choice={"type": "function", "function": {"name": "get_time"}},
                                       parallel_tool_calls=False, **GREEDY)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_time"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city"} and isinstance(args["city"], str)


def test_parallel_calls_are_all_of_the_allowed_function(client):
    r = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER, TIME],
                                       tool_choice={"type": "function", "function": {"name": "get_time"}},
                                       **GREEDY)
    calls = r.choices[0].message.tool_calls
    assert calls and {c.function.name for c in calls} == {"get_time"}
    assert len({c.id for c in calls}) == len(calls)


def test_follow_up_with_the_tool_result_gives_text(client):
    call = {"id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "call_abc123",
                       "content": '{"temperature": 21, "unit": "celsius", "sky": "sunny"}'}]
    r = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER], **GREEDY)
    choice = r.choices[0]
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    assert "21" in choice.message.content


def test_tool_call_history_renders_through_the_template(server):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}
    body = {"messages": ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                               {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}], "tools": [WEATHER]}
    with server.client(timeout=60) as http:
        prompt = http.post("/apply-template", json=body).json()["prompt"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}' in prompt
    assert "<tool_response>\n21 C\n</tool_response>" in prompt
    assert '"name": "get_weather"' in prompt.split("\n</tools>")[0]


def test_tool_choice_none_gives_text(client):
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hello in French."}],
                                       tools=[WEATHER], tool_choice="none", **GREEDY)
    choice = r.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason in ("stop", "length")
    assert choice.message.content


def test_bad_tool_requests_are_400_and_the_server_goes_on(client):
    bad = [
        {"tools": [WEATHER], "extra_body": {"grammar": 'root ::= "x"'}},
        {"tools": [{"type": "function"}]},
        {"tools": [WEATHER], "tool_choice": "sometimes"},
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
        {"tools": [WEATHER], "stream": True, "logprobs": True},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}],
         "tool_choice": "required"},
    ]
    for extra in bad:
        with pytest.raises(BadRequestError):
            client.chat.completions.create(model="m", messages=ASK, max_tokens=4, **extra)
    r = client.chat.completions.create(model="m", messages=ASK, max_tokens=4)
    assert r.choices[0].message.content is not None


def test_auto_parses_the_models_own_call_streamed_and_not(client):
    """Unconstrained (`auto`): whatever the model writes, no `<tool_call>` markup reaches the content, and
    the streamed reply carries the same calls as the whole one (greedy decoding)."""
    r = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], **GREEDY)
    whole = r.choices[0]
    assert "<tool_call>" not in (whole.message.content or "")
    assert [c.function.name for c in whole.message.tool_calls] == ["get_weather"]  # this model does call it
    stream = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], stream=True, **GREEDY)
    names, arguments, content, finish = [], [], "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for d in delta.tool_calls or []:
            if d.id:
                names.append(d.function.name)
                arguments.append("")
            arguments[d.index] += d.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert "<tool_call>" not in content and finish == whole.finish_reason
    assert names == [c.function.name for c in whole.message.tool_calls or []]
    assert [json.loads(a) for a in arguments] == [json.loads(c.function.arguments)
                                                   for c in whole.message.tool_calls or []]
