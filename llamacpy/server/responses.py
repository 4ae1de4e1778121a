"""OpenAI's Responses API (POST /v1/responses, /responses), by conversion to chat as llama-server does it
(server_chat_convert_responses_to_chatcmpl): `to_chat` turns the request into a chat completions body,
`response` and `response_events` render the chat generation back as a response object or as the
Responses event stream (`event: <type>` frames, each with a `sequence_number`; no [DONE]).

Nothing is stored: `previous_response_id` (and `background`) are a 400, `store` is ignored (the response
says `"store": false`). Only function tools; images, files and audio are a 400 (text only).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..engine import Stats
from .errors import ApiError, bad_request
from .formats import reply_parts, split_reply, timings
from .generation import Generation, Result
from .reasoning import Thinking
from .tool_calls import ToolCall, ToolSetup

log = logging.getLogger("llamacpy.server")

# Responses fields with no chat counterpart (or converted here); the others pass through to chat as
# llama-server passes them (native sampling fields: top_k, min_p, seed, ...)
RESPONSES_ONLY = {"input", "instructions", "max_output_tokens", "tools", "tool_choice", "text", "store",
                  "include", "metadata", "reasoning", "truncation", "background", "service_tier", "user",
                  "previous_response_id", "prompt_cache_key", "safety_identifier", "max_tool_calls",
                  "top_logprobs", "prompt", "conversation", "stream_options",
                  # chat fields this rendering does not honour (one choice, no logprobs)
                  "messages", "n", "n_cmpl", "logprobs", "max_tokens", "max_completion_tokens"}
TEXT_PARTS = ("input_text", "output_text", "text")


# -- the request --------------------------------------------------------------------------------------------

def to_chat(data: dict) -> dict:
    """The chat completions body of a Responses request."""
    if data.get("previous_response_id") is not None:
        raise bad_request("'previous_response_id' is not supported: this server stores no responses; send the "
                          "whole conversation in 'input'")
    if data.get("background") is True:
        raise bad_request("'background' responses are not supported")
    if data.get("conversation") is not None:
        raise bad_request("'conversation' is not supported: send the whole conversation in 'input'")
    out = {k: v for k, v in data.items() if k not in RESPONSES_ONLY}
    messages = []
    if data.get("instructions") is not None:
        if not isinstance(data["instructions"], str):
            raise bad_request("'instructions' must be a string")
        messages.append({"role": "system", "content": data["instructions"]})
    messages += _input(data.get("input"))
    out["messages"] = messages
    if data.get("max_output_tokens") is not None:
        out["max_tokens"] = data["max_output_tokens"]
    if data.get("tools") is not None:
        out["tools"] = _tools(data["tools"])
    if data.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(data["tool_choice"])
    text = data.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        out["response_format"] = _format(text["format"])
    return out


def _input(value: Any) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise bad_request("'input' is required: a string or a non-empty array of input items")
    messages: list[dict] = []
    for item in value:
        if not isinstance(item, dict):
            raise bad_request("each input item must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item))
        elif kind == "function_call":
            _function_call(messages, item)
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(item.get("call_id"), str):
                raise bad_request("a function_call_output item must have a string 'call_id'")
            text = output if isinstance(output, str) else _text(output, "a function_call_output's 'output'")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        elif kind != "reasoning":  # earlier reasoning is not rendered again
            raise bad_request(f"input items of type '{kind}' are not supported")
    return messages


def _message(item: dict) -> dict:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise bad_request("a message item's 'role' must be \"user\", \"assistant\", \"system\" or \"developer\"")
    content = item.get("content")
    text = content if isinstance(content, str) else _text(content, "a message item's 'content'")
    return {"role": "system" if role == "developer" else role, "content": text}


def _text(parts: Any, what: str) -> str:
    if not isinstance(parts, list):
        raise bad_request(f"{what} must be a string or an array of content parts")
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_image", "input_file", "input_audio"):
            raise bad_request(f"{kind} input is not supported by this server (text only)")
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind in TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise bad_request(f"{what}: each part must be {{\"type\": \"input_text\", \"text\": string}}")
    return "".join(texts)


def _function_call(messages: list[dict], item: dict) -> None:
    """A call joins the assistant message before it (calls made in one turn), or starts one."""
    name, args, call_id = item.get("name"), item.get("arguments"), item.get("call_id")
    if not isinstance(name, str) or not isinstance(args, str) or not isinstance(call_id, str):
        raise bad_request("a function_call item must have string 'call_id', 'name' and 'arguments'")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
    if messages and messages[-1]["role"] == "assistant":
        messages[-1].setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array")
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise bad_request(f"tool type '{kind}' is not supported: only function tools")
        fn = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad_request("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                      "{\"type\": \"function\", \"name\": ...}")


def _format(fmt: dict) -> dict:
    """`text.format` as chat's `response_format`."""
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"schema": fmt.get("schema")}}
    return fmt


# -- the response -------------------------------------------------------------------------------------------

@dataclass
class ResponseMeta:
    """The response object's fields known before generating (some echo the request)."""

    model: str
    request: dict
    id: str = field(default_factory=lambda: "resp_" + secrets.token_hex(24))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def head(self, status: str) -> dict:
        q = self.request
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "error": None, "incomplete_details": None, "instructions": q.get("instructions"),
                "max_output_tokens": q.get("max_output_tokens"), "model": self.model, "output": [],
                "parallel_tool_calls": q.get("parallel_tool_calls", True), "previous_response_id": None,
                "store": False, "temperature": q.get("temperature"), "top_p": q.get("top_p"),
                "tool_choice": q.get("tool_choice", "auto"), "tools": q.get("tools") or [],
                "text": q.get("text") or {"format": {"type": "text"}}, "truncation": "disabled",
                "metadata": q.get("metadata") or {}, "usage": None}

    def done(self, status: str, output: list[dict], stats: Stats) -> dict:
        out = {**self.head(status), "output": output, "usage": _usage(stats)}
        if status == "incomplete":
            out["incomplete_details"] = {"reason": "max_output_tokens"}
        return out


def _usage(s: Stats) -> dict:
    return {"input_tokens": s.n_prompt, "input_tokens_details": {"cached_tokens": s.n_cached},
            "output_tokens": s.n_decoded, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": s.n_prompt + s.n_decoded}


def _status(finish: str) -> str:
    return "incomplete" if finish == "length" else "completed"


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str) -> dict:
    return {"type": "message", "id": item_id, "role": "assistant", "status": status,
            "content": [_text_part(text)] if status != "in_progress" else []}


def _call_item(call: ToolCall, item_id: str, status: str, arguments: str | None = None) -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call.id, "name": call.name,
            "arguments": call.arguments if arguments is None else arguments, "status": status}


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def _reasoning_item(item_id: str, text: str, status: str) -> dict:
    return {"type": "reasoning", "id": item_id, "summary": [], "encrypted_content": "", "status": status,
            "content": [{"type": "reasoning_text", "text": text}] if status != "in_progress" else []}


def response(meta: ResponseMeta, r: Result, tools: ToolSetup | None, think: Thinking | None) -> dict:
    reasoning, text, calls = split_reply(r, tools, think)
    status = _status(r.finish)
    output = [_reasoning_item(_new_id("rs_"), reasoning, "completed")] if reasoning else []
    output += [_message_item(_new_id("msg_"), text, status)] if text or not calls else []
    output += [_call_item(c, _new_id("fc_"), "completed") for c in calls]
    return meta.done(status, output, r.stats)


@dataclass
class _Timings:
    """The end of a piece's events: its timings (with timings_per_token) go on the last of them."""

    timings: dict | None


async def response_events(meta: ResponseMeta, gen: Generation, tools: ToolSetup | None) -> AsyncIterator[dict]:
    """response.created / in_progress, then per output item: output_item.added, its content part or
    function call arguments, output_item.done; then response.completed (or response.incomplete when
    `max_output_tokens` cut the reply short), with llama-server's `timings`."""
    held = None  # an event waits for the next one or for the end of its piece (no waiting on the engine)
    async for e in _events(meta, gen, tools):
        if held is not None and isinstance(e, _Timings) and e.timings is not None:
            held["timings"] = e.timings
        if held is not None:
            yield held
        held = None if isinstance(e, _Timings) else e
    if held is not None:
        yield held


async def _events(meta: ResponseMeta, gen: Generation, tools: ToolSetup | None) -> AsyncIterator[dict | _Timings]:
    seq = 0

    def event(kind: str, **fields: Any) -> dict:
        nonlocal seq
        seq += 1
        return {"type": kind, "sequence_number": seq - 1, **fields}

    output: list[dict] = []
    text_id, text = None, ""  # the message item being written
    reasoning_id, reasoning = None, ""  # the reasoning item being written

    def close_reasoning() -> list[dict]:
        nonlocal reasoning_id, reasoning
        if reasoning_id is None:
            return []
        index, item = len(output), _reasoning_item(reasoning_id, reasoning, "completed")
        output.append(item)
        done = event("response.reasoning_text.done", item_id=reasoning_id, output_index=index, content_index=0,
                     text=reasoning)
        reasoning_id, reasoning = None, ""
        return [done, event("response.output_item.done", output_index=index, item=item)]

    def close_text(status: str) -> list[dict]:
        nonlocal text_id, text
        index, item = len(output), _message_item(text_id, text, status)
        output.append(item)
        where = {"item_id": text_id, "output_index": index, "content_index": 0}
        text_id, text = None, ""
        return [event("response.output_text.done", **where, text=item["content"][0]["text"], logprobs=[]),
                event("response.content_part.done", **where, part=item["content"][0]),
                event("response.output_item.done", output_index=index, item=item)]

    args = gen.args
    yield event("response.created", response=meta.head("in_progress"))
    if not args.return_progress:  # else each progress update is an in_progress event
        yield event("response.in_progress", response=meta.head("in_progress"))
    try:
        async for kind, value in reply_parts(gen, tools):
            if kind == "progress":  # llama-server's telemetry: prompt_progress (and the timings so far)
                e = event("response.in_progress", response=meta.head("in_progress"), prompt_progress=value.progress)
                if args.timings_per_token:
                    e["timings"] = timings(value.stats)
                yield e
                continue
            if kind == "piece":
                yield _Timings(timings(value.stats) if args.timings_per_token else None)
                continue
            if kind == "thinking":
                if reasoning_id is None:
                    reasoning_id = _new_id("rs_")
                    yield event("response.output_item.added", output_index=len(output),
                                item=_reasoning_item(reasoning_id, "", "in_progress"))
                reasoning += value
                yield event("response.reasoning_text.delta", item_id=reasoning_id, output_index=len(output),
                            content_index=0, delta=value)
                continue
            for e in close_reasoning():
                yield e
            if kind == "text":
                if text_id is None:
                    text_id = _new_id("msg_")
                    where = {"item_id": text_id, "output_index": len(output), "content_index": 0}
                    yield event("response.output_item.added", output_index=len(output),
                                item=_message_item(text_id, "", "in_progress"))
                    yield event("response.content_part.added", **where, part=_text_part(""))
                text += value
                yield event("response.output_text.delta", item_id=text_id, output_index=len(output),
                            content_index=0, delta=value, logprobs=[])
            elif kind == "call":
                if text_id is not None:
                    for e in close_text("completed"):
                        yield e
                item_id, index = _new_id("fc_"), len(output)
                yield event("response.output_item.added", output_index=index,
                            item=_call_item(value, item_id, "in_progress", ""))
                yield event("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                            delta=value.arguments)
                yield event("response.function_call_arguments.done", item_id=item_id, output_index=index,
                            name=value.name, arguments=value.arguments)
                output.append(_call_item(value, item_id, "completed"))
                yield event("response.output_item.done", output_index=index, item=output[-1])
            elif kind == "end":
                status = _status(value.finish)
                if text_id is None and not output:  # an empty reply is still one (empty) message
                    text_id = _new_id("msg_")
                    where = {"item_id": text_id, "output_index": 0, "content_index": 0}
                    yield event("response.output_item.added", output_index=0,
                                item=_message_item(text_id, "", "in_progress"))
                    yield event("response.content_part.added", **where, part=_text_part(""))
                if text_id is not None:
                    for e in close_text(status):
                        yield e
                yield event(f"response.{status}", response=meta.done(status, output, value.stats),
                            timings=timings(value.stats))
    except ApiError:
        raise
    except Exception as e:  # a bug still ends the stream with an error frame
        log.exception("stream failed")
        raise ApiError(500, f"{type(e).__name__}: {e}") from e
