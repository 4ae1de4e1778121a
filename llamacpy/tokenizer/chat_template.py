"""Chat templates: Jinja2 sources from GGUF metadata rendered the way llama.cpp and HF transformers do.

The environment (jinja_env.py) matches HF's (a Jinja sandbox, trim/lstrip blocks, loopcontrols, `tojson` without
HTML escaping, `raise_exception`, `strftime_now`, a no-op `{% generation %}` block), with the leniency of
llama.cpp's own engine: `str + none` concatenates, `undefined.attr` is undefined, `tojson` takes the
generators `map` returns, and templates may mutate lists they build (Kimi-K2 appends to one). The caller's
messages are protected by rendering a deep copy, not by HF's immutable sandbox. On top of it,
llama.cpp's input workarounds (common/chat.cpp) are applied from capabilities probed once per template:
a system prompt is merged into the first user turn when the template drops or rejects system messages,
content is passed as a string or as typed parts depending on which the template handles, and tool-call
arguments given as JSON strings are parsed when the template expects objects. llama.cpp's named formats:
builtin_templates.py.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import jinja2

from .builtin_templates import BUILTIN_TEMPLATES, CHATML
from .jinja_env import ChatTemplateError, environment, template_error

__all__ = ["CHATML", "ChatTemplate", "ChatTemplateError", "TemplateCaps"]

# -- capabilities ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateCaps:
    """What a template does with its input, found by rendering probe conversations (as llama.cpp does)."""

    supports_string_content: bool = True
    supports_typed_content: bool = False
    supports_system_role: bool = True
    supports_object_arguments: bool = False


class _TrackedArgs(dict):
    """Tool-call arguments that record whether the template looked inside them."""

    used = False

    def _touch(self) -> None:
        self.used = True

    def __getitem__(self, key: Any) -> Any:
        self._touch()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._touch()
        return super().get(key, default)

    def items(self) -> Any:  # also what json.dumps (tojson) calls on a dict subclass
        self._touch()
        return super().items()

    def keys(self) -> Any:
        self._touch()
        return super().keys()

    def values(self) -> Any:
        self._touch()
        return super().values()

    def __iter__(self) -> Any:
        self._touch()
        return super().__iter__()


_STRING_MARKER = "STRING_MARKER_7c1e"
_TYPED_MARKER = "TYPED_MARKER_7c1e"
_SYSTEM_MARKER = "SYSTEM_MARKER_7c1e"
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "tool1",
            "description": "Tool description",
            "parameters": {
                "type": "object",
                "properties": {"arg": {"type": "string", "description": "Arg"}},
                "required": ["arg"],
            },
        },
    }
]


def _probe_tool_conversation(args: dict) -> list[dict]:
    call = {"id": "call00001", "type": "function", "function": {"name": "tool1", "arguments": args}}
    return [
        {"role": "user", "content": "User message"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "Tool response", "tool_call_id": "call00001"},
        {"role": "assistant", "content": "The tool response was 'tool response'"},
        {"role": "user", "content": "User message"},
    ]


# -- message normalization (llama.cpp's workarounds) -----------------------------------------------------


def _concat_parts(parts: list) -> str:
    """Typed content parts as one string: text parts joined by newlines (llama.cpp's concat_content_parts)."""
    texts = [p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(texts)


def _text(content: Any) -> str:
    return _concat_parts(content) if isinstance(content, list) else str(content)


def _convert_arguments(message: dict, as_objects: bool) -> dict:
    """Tool-call arguments as the template wants them: parsed objects, or JSON text (llama.cpp's dump())."""
    calls = []
    for call in message["tool_calls"]:
        fn = call.get("function") if isinstance(call, dict) else None
        args = fn.get("arguments") if isinstance(fn, dict) else None
        if as_objects and isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise ChatTemplateError(f"tool call arguments are not valid JSON: {e}") from None
        elif not as_objects and isinstance(args, dict):
            args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        else:
            calls.append(call)
            continue
        calls.append({**call, "function": {**fn, "arguments": args}})
    return {**message, "tool_calls": calls}


def _merge_system(messages: list[dict]) -> list[dict]:
    """Fold a leading system message into the next message, for templates without a system role."""
    if not messages or messages[0].get("role") != "system":
        return messages
    if len(messages) == 1:
        return []
    system, second = _text(messages[0].get("content", "")), messages[1]
    content = second.get("content", "")
    if isinstance(content, list):  # typed parts are joined with newlines too
        content = [{"type": "text", "text": system}, *content]
    else:
        content = system + "\n" + content
    return [{**second, "content": content}, *messages[2:]]


# -- the template ----------------------------------------------------------------------------------------


def _default_context() -> dict[str, Any]:
    """Variables llama.cpp always passes (common_chat_extra_context); `extra` may override them."""
    today = date.today()
    return {
        "enable_thinking": True,  # templates test `enable_thinking is false` to turn reasoning off
        "date_string": today.strftime("%d %b %Y"),
        "datetime": today.strftime("%b %d %Y"),
    }


def _with_messages(
    context: dict, messages: list[dict], add_generation_prompt: bool, tools: list | None
) -> dict:
    context = {**context, "messages": messages, "add_generation_prompt": add_generation_prompt}
    if tools:  # like llama.cpp: no tools means `tools` is undefined, not an empty list
        context["tools"] = tools
    return context


class ChatTemplate:
    """A compiled chat template.

    >>> t = ChatTemplate.builtin("chatml")
    >>> t.render([{"role": "user", "content": "Hi"}])
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'

    `polyfills=False` skips llama.cpp's message workarounds: messages reach the template as given, as with
    HF's `apply_chat_template`.
    `add_bos`/`add_eos` strip a leading BOS / trailing EOS string from the output because the tokenizer
    adds those tokens itself (llama.cpp does the same).
    """

    def __init__(
        self,
        source: str,
        bos_token: str = "",
        eos_token: str = "",
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        polyfills: bool = True,
    ):
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.polyfills = polyfills
        self._caps: TemplateCaps | None = None
        try:
            self._template = environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(f"chat template syntax error at line {e.lineno}: {e.message}") from None
        except Exception as e:  # noqa: BLE001 - anything the compiler throws is the template's fault
            raise template_error(e, "compile") from None

    # -- constructors --

    @classmethod
    def builtin(cls, name: str, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """A template by llama.cpp's `--chat-template NAME` (chatml, llama3, gemma, mistral-v7, ...)."""
        try:
            source = BUILTIN_TEMPLATES[name]
        except KeyError:
            known = ", ".join(sorted(BUILTIN_TEMPLATES))
            raise ChatTemplateError(f"unknown chat template {name!r}; built-in templates: {known}") from None
        template = cls(source, bos_token, eos_token)
        # ours, written for string content; a system message they leave out stays out, as in llama.cpp
        template._caps = TemplateCaps()
        return template

    @classmethod
    def from_gguf(cls, g: Any, name: str | None = None) -> ChatTemplate:
        """The template stored in a GGUF file (`tokenizer.chat_template[.NAME]`), else ChatML like llama.cpp.

        Without a default template the `tool_use` variant is used when present (as llama.cpp does).
        """
        meta = g.metadata
        key = f"tokenizer.chat_template.{name}" if name else "tokenizer.chat_template"
        source = meta.get(key) or (None if name else meta.get("tokenizer.chat_template.tool_use")) or CHATML
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def token(kind: str) -> str:
            tid = meta.get(f"tokenizer.ggml.{kind}_token_id")
            return str(tokens[tid]) if tid is not None and 0 <= int(tid) < len(tokens) else ""

        model = meta.get("tokenizer.ggml.model", "")
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", model in ("llama", "bert")))
        add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", model == "t5"))
        return cls(str(source), token("bos"), token("eos"), add_bos=add_bos, add_eos=add_eos)

    # -- rendering --

    def render(
        self,
        messages: list[dict],
        add_generation_prompt: bool = True,
        tools: list | None = None,
        **extra: Any,
    ) -> str:
        """The prompt for `messages` (OpenAI chat format). `extra` reaches the template as variables
        (e.g. enable_thinking=False, reasoning_effort="low", date_string="26 Jul 2024")."""
        # the template may mutate lists and dicts: give it copies, never the caller's objects
        messages, tools, extra = copy.deepcopy((messages, tools, extra))
        if self.polyfills:
            messages = self._normalize(messages)
        context = {**_default_context(), **extra, "bos_token": self.bos_token, "eos_token": self.eos_token}
        out = self._render(_with_messages(context, messages, add_generation_prompt, tools))
        if self.add_bos and self.bos_token and out.startswith(self.bos_token):
            out = out[len(self.bos_token) :]
        if self.add_eos and self.eos_token and out.endswith(self.eos_token):
            out = out[: -len(self.eos_token)]
        return out

    def _render(self, context: dict) -> str:
        try:
            return self._template.render(context)
        except ChatTemplateError:
            raise
        except Exception as e:  # noqa: BLE001 - user-facing: never leak a Jinja traceback
            raise template_error(e, "render") from None

    def _normalize(self, messages: list[dict]) -> list[dict]:
        caps = self.caps
        out = []
        for message in messages:
            message = dict(message)
            content = message.get("content")
            if content is None:
                content = ""
            if caps.supports_string_content and not caps.supports_typed_content and isinstance(content, list):
                content = _concat_parts(content)
            elif (
                caps.supports_typed_content and not caps.supports_string_content and isinstance(content, str)
            ):
                content = [{"type": "text", "text": content}]
            message["content"] = content
            if message.get("role") == "developer" and "<|channel|>" not in self.source:
                message["role"] = "system"  # only GPT-OSS knows the developer role
            if message.get("tool_calls"):
                message = _convert_arguments(message, caps.supports_object_arguments)
            out.append(message)
        if not caps.supports_system_role:
            out = _merge_system(out)
        return out

    @property
    def caps(self) -> TemplateCaps:
        """Capabilities probed on first use and cached."""
        if self._caps is None:
            self._caps = self._probe_caps()
        return self._caps

    def _probe(self, messages: list[dict], tools: list | None = None) -> str | None:
        context = {**_default_context(), "bos_token": "", "eos_token": ""}
        try:
            return self._template.render(_with_messages(context, messages, True, tools))
        except Exception:  # noqa: BLE001 - a failing probe: the template rejects that input
            return None

    def _probe_caps(self) -> TemplateCaps:
        as_string = self._probe([{"role": "user", "content": _STRING_MARKER}])
        string_ok = as_string is not None and _STRING_MARKER in as_string
        as_parts = self._probe([{"role": "user", "content": [{"type": "text", "text": _TYPED_MARKER}]}])
        # a template that prints the list itself shows its repr/JSON, which is not typed-content support
        typed_ok = (
            as_parts is not None
            and _TYPED_MARKER in as_parts
            and "'type'" not in as_parts
            and '"type"' not in as_parts
        )
        if not string_ok and not typed_ok:
            string_ok = True  # the content never shows: assume the common case and let errors surface

        def content(text: str) -> Any:
            return text if string_ok else [{"type": "text", "text": text}]

        with_system = self._probe(
            [
                {"role": "system", "content": content(_SYSTEM_MARKER)},
                {"role": "user", "content": content("User message")},
            ]
        )
        system_ok = with_system is not None and _SYSTEM_MARKER in with_system
        args = _TrackedArgs(arg="value")
        conversation = _probe_tool_conversation(args)
        for m in conversation:
            m["content"] = content(m["content"])
        object_args = self._probe(conversation, _PROBE_TOOLS) is not None and args.used
        return TemplateCaps(
            supports_string_content=string_ok,
            supports_typed_content=typed_ok,
            supports_system_role=system_ok,
            supports_object_arguments=object_args,
        )
