"""The Anthropic and Responses requests as the chat requests they are converted to, and their SSE framing
(named events, an error after the first frame), without a model."""

from __future__ import annotations

import asyncio
import json

import pytest

from llamacpy.server import anthropic, responses
from llamacpy.server.errors import ApiError, exceeds_context
from llamacpy.server.sse import sse_bytes


def test_anthropic_tool_round_trip_becomes_chat_history():
    body = {"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "Be "}, {"type": "text",
                                                                                      "text": "brief."}],
            "stop_sequences": ["END"], "temperature": 0.5, "metadata": {"user_id": "u"},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                                  {"type": "tool_use", "id": "toolu_1", "name": "weather",
                                                   "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": [{"type": "text", "text": "21 C"}]},
                                             {"type": "text", "text": "And tomorrow?"}]}],
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}}
    chat = anthropic.to_chat(body)
    call = {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C"},  # before the turn's text
        {"role": "user", "content": "And tomorrow?"}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["parallel_tool_calls"] is False and chat["stop"] == ["END"]
    assert (chat["max_tokens"], chat["temperature"]) == (9, 0.5) and "metadata" not in chat
    assert chat["tools"] == [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize("body, message", [
    ({"messages": [{"role": "user", "content": "x"}]}, "'max_tokens' is required"),
    ({"max_tokens": 1, "messages": {}}, "'messages' is required"),
    ({"max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}, "'role' \"user\" or \"assistant\""),
    ({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     "image input is not supported"),
    ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "sometimes"}},
     "'tool_choice' must be"),
])
def test_anthropic_bad_requests(body, message):
    with pytest.raises(ApiError, match=message):
        anthropic.to_chat(body)


def test_anthropic_count_tokens_needs_no_max_tokens_and_errors_have_its_shape():
    assert anthropic.to_chat({"messages": [{"role": "user", "content": "x"}]}, count_only=True) == {
        "messages": [{"role": "user", "content": "x"}]}
    e = anthropic.AnthropicError.of(exceeds_context(3000, 1024))
    assert e.status == 400 and e.body() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long: 3000 tokens > 1024 maximum"}}
    assert anthropic.AnthropicError.of(ApiError(503, "busy")).body()["error"]["type"] == "overloaded_error"


def test_responses_items_become_chat_history():
    body = {"model": "m", "instructions": "Be brief.", "max_output_tokens": 7, "top_k": 5, "store": True,
            "input": [{"role": "developer", "content": "Use tools."},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
                      {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
                      {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "21 C"},
                      {"type": "reasoning", "summary": []}],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}
    chat = responses.to_chat(body)
    calls = [{"id": c, "type": "function", "function": {"name": n, "arguments": "{}"}}
             for c, n in (("c1", "weather"), ("c2", "time"))]
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Paris?"}, {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": "21 C"}]
    assert chat["max_tokens"] == 7 and chat["top_k"] == 5 and "store" not in chat and "input" not in chat
    assert chat["tools"] == [{"type": "function", "function": {"name": "weather",
                                                               "parameters": {"type": "object"}}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}


def test_named_sse_frames_and_an_error_after_the_first():
    async def events():
        yield {"type": "message_start"}
        raise anthropic.AnthropicError.of(ApiError(500, "boom"))

    async def collect(named: bool) -> bytes:
        return b"".join([chunk async for chunk in sse_bytes(events(), True, 0, named=named)])

    named = asyncio.run(collect(True)).decode()
    frames = named.split("\n\n")
    assert frames[0] == 'event: message_start\ndata: {"type":"message_start"}'
    assert frames[1].split("\n")[0] == "event: error"
    assert json.loads(frames[1].split("\n")[1][6:]) == {"type": "error", "error": {"type": "api_error",
                                                                                 "message": "boom"}}
    assert "[DONE]" not in named and asyncio.run(collect(False)).decode().startswith("data: ")
