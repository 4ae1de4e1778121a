"""The tool-call parser on literal replies (Hermes blocks, generic JSON, malformed ones), whole and streamed,
and the checks of a request's tools / tool_choice."""

from __future__ import annotations

import json

import pytest

from llamacpy.server.errors import ApiError
from llamacpy.server.tool_calls import ToolCallStream, parse_tool_calls, tool_grammar, tool_setup

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def test_one_hermes_call():
    content, calls = parse_tool_calls('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                                      '</tool_call>')
    assert content is None
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    out = calls[0].json()
    assert out["type"] == "function" and out["id"].startswith("call_") and len(out["id"]) > 10
    assert out["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_several_hermes_calls_with_text_around():
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\nDone.')
    content, calls = parse_tool_calls(text)
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {}]
    assert content == "Let me check.\nDone."
    assert _stream(list(text))[0] == content
    assert len({c.id for c in calls}) == 2


def test_unclosed_last_block_and_string_arguments():
    content, calls = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}')
    assert content is None and calls[0].name == "f" and json.loads(calls[0].arguments) == {"x": 1}


def test_malformed_json_is_left_as_content():
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par\n</tool_call>'
    assert parse_tool_calls(text) == (text, [])
    mixed = text + '\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    content, calls = parse_tool_calls(mixed)
    assert [c.name for c in calls] == ["get_time"] and content == text
    assert parse_tool_calls('<tool_call>\n{"arguments": {}}\n</tool_call>')[1] == []  # no name


def test_generic_json_replies():
    _, calls = parse_tool_calls('{"name": "get_weather", "arguments": {"city": "Oslo"}}')
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Oslo"}
    _, calls = parse_tool_calls('```json\n{"tool_calls": [{"name": "a", "arguments": {}}, '
                                '{"name": "b", "arguments": {"k": [1]}}]}\n```')
    assert [c.name for c in calls] == ["a", "b"]
    _, calls = parse_tool_calls('{"tool_call": {"name": "a", "arguments": {"q": 1}}}')
    assert calls[0].name == "a"
    for text in ('{"city": "Oslo"}', 'The answer is {"name": "a", "arguments": {}}', "plain text", ""):
        assert parse_tool_calls(text) == (text, [])


def _stream(chunks: list[str]) -> tuple[str, list]:
    s = ToolCallStream()
    events = [e for c in chunks for e in s.feed(c)] + s.finish()
    return "".join(v for k, v in events if k == "content"), [v for k, v in events if k == "call"]


def _chars(text: str) -> list[str]:
    return list(text)


def test_stream_holds_back_a_possible_tag_and_parses_calls():
    text = ('Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    content, calls = _stream(_chars(text))
    assert content == "Checking." and [c.name for c in calls] == ["get_weather", "get_time"]
    s = ToolCallStream()
    assert s.feed("Hi <tool_") == [("content", "Hi")]  # the possible tag (and the space before it) is held
    assert s.feed("x") == [("content", " <tool_x")]


def test_stream_plain_text_and_malformed_blocks_come_through():
    assert _stream(_chars("Hello there, world.\n")) == ("Hello there, world.\n", [])
    bad = '<tool_call>\n{"name": oops}\n</tool_call>'
    assert _stream(_chars(bad)) == (bad, [])
    assert _stream(["<tool_", "call>\n{\"name\""]) == ('<tool_call>\n{"name"', [])  # cut off: text


def test_stream_generic_json_reply_is_held_to_the_end():
    s = ToolCallStream()
    assert s.feed('{"name": "get_weather", ') == []
    assert s.feed('"arguments": {"city": "Rome"}}') == []
    (kind, call), = s.finish()
    assert kind == "call" and call.name == "get_weather"
    assert _stream(['{"just": ', '"json"}']) == ('{"just": "json"}', [])


def test_tool_setup_checks():
    assert tool_setup({}, "") is None
    setup = tool_setup({"tools": [WEATHER, TIME]}, "... <tool_call> ...")
    assert setup.choice == "auto" and setup.hermes and setup.parallel and setup.parse and not setup.forced
    named = tool_setup({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                        "parallel_tool_calls": False}, "")
    assert named.choice == "function" and named.name == "get_weather" and named.forced and not named.parallel
    assert not tool_setup({"tools": [WEATHER], "tool_choice": "none"}, "").parse
    bad = [{"tools": {}}, {"tools": [{"type": "function"}]}, {"tools": [{"function": {"name": ""}}]},
           {"tools": [WEATHER, WEATHER]}, {"tools": [{"type": "code", "function": {"name": "a"}}]},
           {"tools": [WEATHER], "tool_choice": "sometimes"},
           {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
           {"tools": [WEATHER], "parallel_tool_calls": "yes"}, {"tool_choice": "required"},
           {"tools": [{"function": {"name": "a", "parameters": []}}]}]
    for body in bad:
        with pytest.raises(ApiError) as e:
            tool_setup(body, "")
        assert e.value.status == 400, body


def test_tool_grammar_shapes():
    hermes = tool_grammar(tool_setup({"tools": [WEATHER, TIME], "tool_choice": "required"}, OPEN_TEMPLATE))
    assert "<tool_call>" in hermes and '("\\n" block)*' in hermes and "anyOf" in hermes
    generic = tool_grammar(tool_setup({"tools": [WEATHER], "tool_choice": "required",
                                       "parallel_tool_calls": False}, ""))
    assert "<tool_call>" not in generic and '"const": "get_weather"' in generic and "tool_calls" not in generic


OPEN_TEMPLATE = "<tool_call>\n{...}\n</tool_call>"
