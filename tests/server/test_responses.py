"""OpenAI's Responses API end to end with the `openai` package: text (whole and streamed) on the default model
against the chat route, `max_output_tokens` (incomplete), the input_tokens routes, the 400s, a resumable
stream, and function tools on qwen2.5-coder-0.5b (a call, streamed and not, and the follow-up turn)."""

from __future__ import annotations

import json

import pytest
from openai import BadRequestError, OpenAI
from serverkit import sse_events

pytestmark = pytest.mark.slow

ASK = "Name three colors."
GREEDY = {"model": "smol", "temperature": 0, "max_output_tokens": 24}
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city",
           "parameters": {"type": "object", "required": ["city", "unit"],
                          "properties": {"city": {"type": "string", "maxLength": 40},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}}}}


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-c", "2048", "-np", "2")


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def http(server):
    with server.client(timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def chat(client):
    """The same request on the chat route, greedy: what the Responses API must answer."""
    return client.chat.completions.create(model="smol", messages=[{"role": "user", "content": ASK}],
                                          temperature=0, max_tokens=24)


def test_response_equals_the_chat_completion(client, chat):
    r = client.responses.create(input=ASK, **GREEDY)
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert [p.type for p in item.content] == ["output_text"]
    assert r.output_text == chat.choices[0].message.content
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert r.usage.output_tokens == chat.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.incomplete_details is None


def test_stream_helper_text_and_final_response(client, chat):
    with client.responses.stream(input=ASK, **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response()
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == chat.choices[0].message.content
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                 "response.content_part.done", "response.output_item.done"):
        assert kinds.count(kind) == 1
    assert final.usage.output_tokens == chat.usage.completion_tokens


def test_raw_stream_is_named_events_without_done(http):
    body = {"input": ASK, "stream": True, **GREEDY}
    with http.stream("POST", "/responses", json=body) as r:
        raw = r.read().decode()
    frames = [f.split("\n") for f in raw.split("\n\n") if f]
    assert all(f[0].startswith("event: ") for f in frames)
    datas = sse_events(line for f in frames for line in f)
    assert [f[0][7:] for f in frames] == [d["type"] for d in datas]
    assert "[DONE]" not in raw


def test_max_output_tokens_gives_incomplete(client):
    r = client.responses.create(input=ASK, model="smol", temperature=0, max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3
    events = list(client.responses.create(input=ASK, model="smol", temperature=0, max_output_tokens=3,
                                          stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output[0].content[0].text == r.output_text


def test_input_items_and_instructions_equal_the_chat_prompt(client, http):
    system = "You are terse."
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
             {"role": "user", "content": ASK}]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": ASK}]
    n = client.responses.input_tokens.count(model="smol", instructions=system, input=items).input_tokens
    chat = client.chat.completions.create(model="smol", messages=messages, max_tokens=1)
    assert n == chat.usage.prompt_tokens
    for path in ("/chat/completions/input_tokens", "/v1/chat/completions/input_tokens"):
        assert http.post(path, json={"messages": messages}).json() == {"object": "response.input_tokens",
                                                                       "input_tokens": n}
    for path in ("/responses/input_tokens", "/v1/responses/input_tokens"):
        assert http.post(path, json={"instructions": system, "input": items}).json()["input_tokens"] == n
    r = client.responses.create(instructions=system, input=items, model="smol", max_output_tokens=1)
    assert r.usage.input_tokens == n


def test_unsupported_requests_are_400_and_the_server_goes_on(client, http):
    bad = [
        ({"previous_response_id": "resp_123"}, "'previous_response_id' is not supported"),
        ({"tools": [{"type": "web_search"}]}, "tool type 'web_search' is not supported"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
         "input_image input is not supported"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "'item_reference' are not supported"),
        ({"input": []}, "'input' is required"),
        ({"tool_choice": "sometimes", "tools": [WEATHER]}, "'tool_choice' must be"),
    ]
    for extra, message in bad:
        with pytest.raises(BadRequestError, match=message):
            client.responses.create(**{"input": ASK, "model": "smol", "max_output_tokens": 2, **extra})
    r = http.post("/v1/responses", content=b'{"input": ')
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert client.responses.create(input=ASK, model="smol", max_output_tokens=2, store=True).usage.output_tokens == 2


def test_resumable_stream_replays_the_same_events(http):
    body = {"input": ASK, "stream": True, **GREEDY}
    with http.stream("POST", "/v1/responses", json=body, headers={"X-Conversation-Id": "responses-1"}) as r:
        assert r.status_code == 200
        live = r.read()
    assert http.get("/v1/stream/responses-1").content == live
    assert b"event: response.completed" in live


# -- function tools on a model that calls them --------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen(start_server, qwen05_path):
    server = start_server(qwen05_path, "-c", "2048")
    return OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=180, max_retries=0)


QWEN = {"model": "qwen", "temperature": 0, "max_output_tokens": 80}
WEATHER_ASK = "What is the weather like in Paris today?"


def test_function_call_and_follow_up(qwen):
    r = qwen.responses.create(input=WEATHER_ASK, tools=[WEATHER], tool_choice="required",
                              parallel_tool_calls=False, **QWEN)
    assert r.status == "completed"
    (call,) = r.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    args = json.loads(call.arguments)
    assert set(args) == {"city", "unit"} and "paris" in args["city"].lower()
    follow = [{"role": "user", "content": WEATHER_ASK}, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id,
               "output": '{"temperature": 21, "unit": "celsius", "sky": "sunny"}'}]
    answer = qwen.responses.create(input=follow, tools=[WEATHER], **QWEN)
    assert [o.type for o in answer.output] == ["message"] and "21" in answer.output_text


def test_function_call_streamed_equals_whole(qwen):
    kw = {"input": WEATHER_ASK, "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"},
          "parallel_tool_calls": False, **QWEN}
    whole = qwen.responses.create(**kw)
    with qwen.responses.stream(**kw) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert [(o.type, o.name, json.loads(o.arguments)) for o in final.output] == \
        [(o.type, o.name, json.loads(o.arguments)) for o in whole.output]
