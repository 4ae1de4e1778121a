"""Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens), by conversion to chat as
llama-server does it (server_chat_convert_anthropic_to_oai): `to_chat` turns the request into a chat
completions body, `message` and `message_events` render the chat generation back as a message or as
Anthropic's named SSE events.

Differences from llama-server, each toward Anthropic's API: `max_tokens` is required (llama-server defaults
to 4096), errors have Anthropic's shape `{"type": "error", "error": {"type", "message"}}`, images and
documents are a 400 (no multimodal model runs here), `tool_choice: {"type": "tool", "name"}` forces that
tool (llama-server forces any tool), and tool results come before the text of the user turn holding them.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..engine import Stats
from .errors import ApiError, bad_request, media_unsupported
from .formats import reply_parts, split_reply
from .generation import Generation, Piece, Result
from .reasoning import Thinking
from .tool_calls import ToolCall, ToolSetup

log = logging.getLogger("llamacpy.server")

PASSED_THROUGH = ("temperature", "top_p", "top_k", "stream", "chat_template_kwargs")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


class AnthropicError(ApiError):
    """An error answered in Anthropic's shape (the status stays llama-server's)."""

    @classmethod
    def of(cls, e: ApiError) -> AnthropicError:
        if isinstance(e, AnthropicError):
            return e
        message = e.message
        if e.type == "exceed_context_size_error":  # the wording Anthropic's clients recognise (to compact)
            message = f"prompt is too long: {e.extra['n_prompt_tokens']} tokens > {e.extra['n_ctx']} maximum"
        return cls(e.status, message, ERROR_TYPES.get(e.status, "api_error"))

    def body(self) -> dict:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}


# -- the request --------------------------------------------------------------------------------------------

def to_chat(data: dict, count_only: bool = False) -> dict:
    """The chat completions body of a Messages request (`count_only`: /count_tokens, no `max_tokens`)."""
    messages = data.get("messages")
    if not isinstance(messages, list):  # an empty one is rendered, as llama-server does
        raise bad_request("'messages' is required and must be an array")
    chat = _system(data.get("system"))
    for m in messages:
        chat += _message(m)
    out: dict[str, Any] = {"messages": chat}
    if not count_only:
        max_tokens = data.get("max_tokens")
        if max_tokens is None:
            raise bad_request("'max_tokens' is required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise bad_request("'max_tokens' must be a positive integer")
        out["max_tokens"] = max_tokens
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad_request("'stop_sequences' must be an array of strings")
        out["stop"] = stops
    out.update(_tools(data.get("tools"), data.get("tool_choice")))
    out.update({k: data[k] for k in PASSED_THROUGH if k in data})
    return out


def _text_blocks(value: Any, what: str) -> str:
    """A string, or the text of an array of text blocks (joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for block in value:
            _check_block(block, what)
            if block["type"] != "text":
                raise bad_request(f"{what} may hold only text blocks, not '{block['type']}'")
            texts.append(_text(block))
        return "".join(texts)
    raise bad_request(f"{what} must be a string or an array of text blocks")


def _check_block(block: Any, what: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise bad_request(f"each block of {what} must be an object with a string 'type'")
    if block["type"] == "image":  # llama-server turns it into an image_url part, which a text model refuses
        raise media_unsupported("image")
    if block["type"] == "document":
        raise bad_request("document blocks are not supported by this server (text only)")


def _text(block: dict) -> str:
    if not isinstance(block.get("text"), str):
        raise bad_request("a text block must have a string 'text'")
    return block["text"]


def _system(value: Any) -> list[dict]:
    if value is None:
        return []
    return [{"role": "system", "content": _text_blocks(value, "'system'")}]


def _message(m: Any) -> list[dict]:
    """One Anthropic message as chat messages: tool results become `tool` messages (ahead of the turn's
    text, so they follow the assistant's calls), tool uses become the assistant's `tool_calls`."""
    if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
        raise bad_request("each message must be an object with 'role' \"user\" or \"assistant\"")
    role, content = m["role"], m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad_request("a message's 'content' must be a string or an array of content blocks")
    texts, calls, results, thoughts = [], [], [], []
    for block in content:
        _check_block(block, "a message's content")
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_use(block))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block))
        elif kind == "thinking" and role == "assistant" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])  # reasoning_content: templates that show earlier thoughts do
        elif kind not in ("thinking", "redacted_thinking"):
            raise bad_request(f"unsupported content block type '{kind}' in a '{role}' message")
    out = results
    if texts or calls:
        msg: dict[str, Any] = {"role": role, "content": "".join(texts) if texts or role != "assistant" else None}
        if thoughts:
            msg["reasoning_content"] = "\n".join(thoughts)
        if calls:
            msg["tool_calls"] = calls
        out = out + [msg]
    return out


def _tool_use(block: dict) -> dict:
    name, args = block.get("name"), block.get("input", {})
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        raise bad_request("a tool_use block must have a string 'name' and an object 'input'")
    call_id = block.get("id") if isinstance(block.get("id"), str) else ""
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def _tool_result(block: dict) -> dict:
    content = block.get("content", "")
    text = _text_blocks(content, "a tool_result's 'content'") if content is not None else ""
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}


def _tools(tools: Any, choice: Any) -> dict:
    out: dict[str, Any] = {}
    if tools is not None:
        if not isinstance(tools, list):
            raise bad_request("'tools' must be an array")
        out["tools"] = [_tool(t) for t in tools]
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind in ("auto", "none"):
            out["tool_choice"] = kind
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "tool" and isinstance(choice.get("name"), str):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            raise bad_request("'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"none\"} or "
                              "{\"type\": \"tool\", \"name\": ...}")
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    return out


def _tool(tool: Any) -> dict:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise bad_request("each tool must be an object with a string 'name' and an 'input_schema'")
    if tool.get("type") not in (None, "custom"):
        raise bad_request(f"tool type '{tool['type']}' is not supported: only client tools (a name and an "
                          "input_schema)")
    fn = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


# -- the response -------------------------------------------------------------------------------------------

@dataclass
class MessageMeta:
    model: str
    id: str = field(default_factory=lambda: "msg_" + secrets.token_hex(12))


def _usage(s: Stats) -> dict:
    """As llama-server counts: cached prompt tokens are cache reads, not input."""
    return {"input_tokens": s.n_prompt - s.n_cached, "output_tokens": s.n_decoded,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": s.n_cached}


def _stop(last: Piece | Result, n_calls: int) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence)."""
    if last.finish == "length":
        return "max_tokens", None
    if last.stop_type == "word":
        return "stop_sequence", last.stopping_word
    return ("tool_use" if n_calls else "end_turn"), None


def _tool_block(call: ToolCall, with_input: bool = True) -> dict:
    """A tool_use block (streamed, its input comes as input_json_delta after an empty one)."""
    args = json.loads(call.arguments) if with_input else {}
    return {"type": "tool_use", "id": "toolu_" + call.id.removeprefix("call_"), "name": call.name,
            "input": args if isinstance(args, dict) else {"arguments": args}}


def message(meta: MessageMeta, r: Result, tools: ToolSetup | None, think: Thinking | None) -> dict:
    reasoning, text, calls = split_reply(r, tools, think)
    content = [{"type": "thinking", "thinking": reasoning, "signature": ""}] if reasoning else []
    content += ([{"type": "text", "text": text}] if text else []) + [_tool_block(c) for c in calls]
    reason, sequence = _stop(r, len(calls))
    return {"id": meta.id, "type": "message", "role": "assistant", "model": meta.model, "content": content,
            "stop_reason": reason, "stop_sequence": sequence, "usage": _usage(r.stats)}


async def message_events(meta: MessageMeta, gen: Generation, tools: ToolSetup | None) -> AsyncIterator[dict]:
    """message_start (at the first token, with the prompt's usage), a content block per thinking run, text run
    and tool call (thinking_delta and an empty signature_delta, as llama-server / text_delta / input_json_delta),
    message_delta (stop reason, output tokens), message_stop. Errors are Anthropic's (`event: error` once the
    stream has begun)."""
    index, open_block, n_calls = -1, None, 0  # open_block: "thinking" | "text" | None

    def close() -> list[dict]:
        events = [{"type": "content_block_delta", "index": index,
                   "delta": {"type": "signature_delta", "signature": ""}}] if open_block == "thinking" else []
        return [*events, {"type": "content_block_stop", "index": index}] if open_block else []

    try:
        async for kind, value in reply_parts(gen, tools):
            if kind in ("progress", "piece"):  # Anthropic's stream has no place for these (nor has llama-server's)
                continue
            if kind == "start":
                head = {"id": meta.id, "type": "message", "role": "assistant", "model": meta.model,
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": {**_usage(value.stats), "output_tokens": 0}}
                yield {"type": "message_start", "message": head}
            elif kind in ("thinking", "text"):
                if open_block != kind:
                    for e in close():
                        yield e
                    index, open_block = index + 1, kind
                    yield {"type": "content_block_start", "index": index, "content_block": {"type": kind, kind: ""}}
                delta = {"type": "thinking_delta", "thinking": value} if kind == "thinking" else {
                    "type": "text_delta", "text": value}
                yield {"type": "content_block_delta", "index": index, "delta": delta}
            elif kind == "call":
                for e in close():
                    yield e
                index, open_block, n_calls = index + 1, None, n_calls + 1
                yield {"type": "content_block_start", "index": index, "content_block": _tool_block(value, False)}
                yield {"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": value.arguments}}
                yield {"type": "content_block_stop", "index": index}
            else:
                for e in close():
                    yield e
                reason, sequence = _stop(value, n_calls)
                yield {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
                       "usage": {"output_tokens": value.stats.n_decoded}}
                yield {"type": "message_stop"}
    except ApiError as e:
        raise AnthropicError.of(e) from None
    except Exception as e:  # a bug still ends the stream with an error of the API's shape
        log.exception("stream failed")
        raise AnthropicError(500, f"{type(e).__name__}: {e}", "api_error") from e
