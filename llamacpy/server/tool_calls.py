"""OpenAI tool calling on the chat route: the request's `tools` / `tool_choice`, the grammar that forces a
call, and the parser that turns the model's reply into `tool_calls` (whole, or as a stream of deltas).

Formats recognised in a reply:
  * Hermes / Qwen2.5: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, any number of them,
    with free text around (a block whose JSON does not parse stays in the content);
  * generic: a reply that is exactly one JSON object `{"name", "arguments"}`, `{"tool_call": {...}}` or
    `{"tool_calls": [...]}` (a ```json fence around it is allowed).

`tool_choice` "required" or a named function constrains the output (llguidance Lark grammar with the
function's `parameters` schema inlined) to the template's own format: Hermes blocks when the template
speaks of `<tool_call>`, the generic JSON object otherwise.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..sampling.grammar import JSON_LAYOUT, closed_objects
from .errors import bad_request

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON text
    id: str = field(default_factory=new_call_id)

    def json(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


# -- the request ---------------------------------------------------------------------------------------------

@dataclass
class ToolSetup:
    """What a chat request asks of tools."""

    tools: list[dict]
    choice: str = "auto"       # "auto" | "none" | "required" | "function"
    name: str | None = None    # the function `tool_choice` names
    parallel: bool = True
    hermes: bool = False       # the template's own format is `<tool_call>` blocks

    @property
    def parse(self) -> bool:
        return self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.choice in ("required", "function")


def tool_setup(data: dict, template_source: str) -> ToolSetup | None:
    """The request's `tools`, `tool_choice` and `parallel_tool_calls`, checked (400 when malformed);
    None when no tools are given."""
    tools = data.get("tools")
    choice = data.get("tool_choice")
    if tools is None or tools == []:
        if choice not in (None, "none", "auto"):
            raise bad_request("'tool_choice' needs 'tools'")
        return None
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array")
    names = set()
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise bad_request("each tool must be {\"type\": \"function\", \"function\": {\"name\", ...}}")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("each tool's function must have a non-empty string 'name'")
        if name in names:
            raise bad_request(f"tool '{name}' is given twice")
        names.add(name)
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad_request(f"the 'parameters' of tool '{name}' must be a JSON schema object")
    parallel = data.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise bad_request("'parallel_tool_calls' must be a boolean")
    setup = ToolSetup(tools=tools, parallel=parallel, hermes=OPEN in (template_source or ""))
    if choice is None or choice in ("auto", "none", "required"):
        setup.choice = choice or "auto"
    elif isinstance(choice, dict) and choice.get("type", "function") == "function" \
            and isinstance(choice.get("function"), dict) and isinstance(choice["function"].get("name"), str):
        setup.choice, setup.name = "function", choice["function"]["name"]
        if setup.name not in names:
            raise bad_request(f"'tool_choice' names the function '{setup.name}', which is not among the tools")
    else:
        raise bad_request("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                          "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    return setup


def _call_schema(tool: dict) -> dict:
    fn = tool["function"]
    params = fn.get("parameters") or {"type": "object"}
    return {"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False}


def tool_grammar(setup: ToolSetup) -> str:
    """Lark text (llguidance) for a forced tool call: one call, or with `parallel_tool_calls` one or more."""
    tools = [t for t in setup.tools if setup.choice != "function" or t["function"]["name"] == setup.name]
    one = {"anyOf": [_call_schema(t) for t in tools]} if len(tools) > 1 else _call_schema(tools[0])
    one = closed_objects(one)
    layout = JSON_LAYOUT
    if setup.hermes:
        call = json.dumps({**one, "x-guidance": layout})
        repeat = ' ("\\n" block)*' if setup.parallel else ""
        return f'start: block{repeat}\nblock: <tool_call> "\\n" call "\\n" </tool_call>\ncall: %json {call}\n'
    if setup.parallel:
        whole = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": one, "minItems": 1}},
                 "required": ["tool_calls"], "additionalProperties": False}
    else:
        whole = one
    return f"start: call\ncall: %json {json.dumps({**whole, 'x-guidance': layout})}\n"


# -- parsing -------------------------------------------------------------------------------------------------

def _call_from(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "function" and isinstance(obj.get("function"), dict):  # OpenAI's own shape
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or not name:
        return None
    if isinstance(args, str):
        try:
            json.loads(args)
        except ValueError:
            return None
        return ToolCall(name, args)
    if not isinstance(args, dict):
        return None
    return ToolCall(name, json.dumps(args, ensure_ascii=False))


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _hermes_block(block: str) -> ToolCall | None:
    """The call in the text between `<tool_call>` and `</tool_call>` (None when it is not one)."""
    return _call_from(_loads(block.strip()))


def generic_calls(text: str) -> list[ToolCall]:
    """The calls of a reply that is exactly one JSON object (fenced or not); [] when it is not one."""
    s = text.strip()
    fenced = _FENCE.match(s)
    if fenced:
        s = fenced.group(1)
    if not s.startswith("{"):
        return []
    obj = _loads(s)
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get("tool_calls"), list) and obj["tool_calls"]:
        calls = [_call_from(c) for c in obj["tool_calls"]]
        return calls if all(calls) else []
    call = _call_from(obj["tool_call"] if isinstance(obj.get("tool_call"), dict) else obj)
    return [call] if call else []


def parse_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """(content, calls) of a whole reply. Without calls the content is the text as it was; with calls it is
    the pieces of text outside them, stripped and joined by newlines, or None when nothing is left."""
    calls: list[ToolCall] = []
    rest: list[str] = []
    pos = 0
    while True:
        i = text.find(OPEN, pos)
        if i < 0:
            rest.append(text[pos:])
            break
        rest.append(text[pos:i])
        j = text.find(CLOSE, i)
        end = len(text) if j < 0 else j + len(CLOSE)
        call = _hermes_block(text[i + len(OPEN):j if j >= 0 else len(text)])
        if call is None:
            rest.append(text[i:end])
        else:
            calls.append(call)
        pos = end
    if not calls:
        calls = generic_calls(text)
        if not calls:
            return text, []
        return None, calls
    return "\n".join(part.strip() for part in rest if part.strip()) or None, calls


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ToolCallStream:
    """Incremental `parse_tool_calls`: `feed(text)` and `finish()` return events, each `("content", str)` or
    `("call", ToolCall)`. Text that might begin a `<tool_call>` is held back, so is a call until its closing
    tag, and a reply that opens with `{` or a fence (a possible generic call) until the end."""

    def __init__(self):
        self.buf = ""
        self.mode: str | None = None  # None: only whitespace so far | "text" | "json"
        self.ws = ""                  # trailing whitespace held back
        self.after_call = False
        self.any_content = False
        self.n_calls = 0

    def feed(self, text: str) -> list[tuple[str, Any]]:
        self.buf += text
        return self._drain(final=False)

    def finish(self) -> list[tuple[str, Any]]:
        out = self._drain(final=True)
        if self.ws and not self.n_calls:
            out.append(("content", self.ws))
        self.ws = ""
        return out

    def _content(self, out: list, text: str) -> None:
        text = self.ws + text
        body = text.rstrip()
        self.ws = text[len(body):]
        if self.after_call:
            body = body.lstrip()
            if body and self.any_content:
                body = "\n" + body  # as the whole reply's parser joins the text around calls
        if body:
            out.append(("content", body))
            self.after_call = False
            self.any_content = True

    def _call(self, out: list, call: ToolCall) -> None:
        self.ws = ""  # whitespace between content and a call is layout, not content
        out.append(("call", call))
        self.n_calls += 1
        self.after_call = True

    def _drain(self, final: bool) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if self.mode is None:
            start = self.buf.lstrip()
            if not start:
                if final:
                    self._content(out, self.buf)
                    self.buf = ""
                return out
            self.mode = "json" if start[0] in "{`" else "text"
        if self.mode == "json":
            if not final:
                return out
            calls = generic_calls(self.buf)
            if calls:
                for call in calls:
                    self._call(out, call)
                self.buf = ""
                return out
            self.mode = "text"
        while self.buf:
            i = self.buf.find(OPEN)
            if i < 0:
                keep = 0 if final else _partial_suffix(self.buf, OPEN)
                self._content(out, self.buf[:len(self.buf) - keep])
                self.buf = self.buf[len(self.buf) - keep:]
                return out
            self._content(out, self.buf[:i])
            self.buf = self.buf[i:]
            j = self.buf.find(CLOSE)
            if j < 0 and not final:
                return out
            end = len(self.buf) if j < 0 else j + len(CLOSE)
            call = _hermes_block(self.buf[len(OPEN):j if j >= 0 else len(self.buf)])
            if call is None:
                self._content(out, self.buf[:end])
            else:
                self._call(out, call)
            self.buf = self.buf[end:]
        return out
