"""Chat templates: Jinja2 sources from GGUF metadata rendered the way llama.cpp and HF transformers do.

The environment matches HF's (a Jinja sandbox, trim/lstrip blocks, loopcontrols, `tojson` without HTML
escaping, `raise_exception`, `strftime_now`, a no-op `{% generation %}` block), with the leniency of
llama.cpp's own engine: `str + none` concatenates, `undefined.attr` is undefined, `tojson` takes the
generators `map` returns, and templates may mutate lists they build (Kimi-K2 appends to one). The caller's
messages are protected by rendering a deep copy, not by HF's immutable sandbox. On top of it,
llama.cpp's input workarounds (common/chat.cpp) are applied from capabilities probed once per template:
a system prompt is merged into the first user turn when the template drops or rejects system messages,
content is passed as a string or as typed parts depending on which the template handles, and tool-call
arguments given as JSON strings are parsed when the template expects objects.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["ChatTemplate", "ChatTemplateError", "TemplateCaps"]

_TEMPLATE_FILENAME = "<template>"  # the name Jinja gives frames of templates built with from_string


class ChatTemplateError(ValueError):
    """A chat template failed to compile or render (syntax error, `raise_exception`, bad input)."""


# -- the Jinja environment -------------------------------------------------------------------------------


class _GenerationExtension(Extension):
    """`{% generation %}...{% endgeneration %}` (HF's assistant-mask marker): renders its body unchanged."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: Any) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(str(message))


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # HF's version: plain json.dumps, no HTML escaping (Jinja's builtin tojson escapes <, >, &, ')
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    """What json.dumps cannot encode: `map`/`select` generators as lists, undefined as null."""
    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, (set, frozenset)) or hasattr(value, "__next__"):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _Undefined(jinja2.ChainableUndefined):
    """Like llama.cpp's engine: `undefined.attr` is undefined instead of an error."""


class _Environment(SandboxedEnvironment):
    """Jinja's sandbox (no unsafe attributes), plus llama.cpp's `str + none` / `str + undefined` == str."""

    intercepted_binops = frozenset(["+"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if isinstance(left, str) and (right is None or isinstance(right, jinja2.Undefined)):
            return left
        if isinstance(right, str) and (left is None or isinstance(left, jinja2.Undefined)):
            return right
        return super().call_binop(context, operator, left, right)


def _environment() -> SandboxedEnvironment:
    env = _Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=_Undefined,
        extensions=["jinja2.ext.loopcontrols", _GenerationExtension],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised at (Jinja rewrites tracebacks to point into templates)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _error(exc: BaseException, what: str) -> ChatTemplateError:
    if isinstance(exc, ChatTemplateError):
        return exc
    line = getattr(exc, "lineno", None) or _template_line(exc)
    where = f" at line {line}" if line else ""
    return ChatTemplateError(f"chat template {what} error{where}: {type(exc).__name__}: {exc}")


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
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(f"chat template syntax error at line {e.lineno}: {e.message}") from None
        except Exception as e:  # noqa: BLE001 - anything the compiler throws is the template's fault
            raise _error(e, "compile") from None

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
            raise _error(e, "render") from None

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


# -- built-in templates ----------------------------------------------------------------------------------
# Jinja versions of llama.cpp's named formats (src/llama-chat.cpp, llm_chat_apply_template), so that
# `--chat-template NAME` gives the same prompt. ChatML is llama.cpp's own Jinja fallback, byte for byte.

CHATML = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}"
)


def _each(body: str, gen: str = "") -> str:
    """Loop over messages (each `m`, content `c`) emitting `body`; then `gen` if add_generation_prompt."""
    src = "{%- for m in messages -%}{%- set c = m.content -%}" + body + "{%- endfor -%}"
    return src + ("{%- if add_generation_prompt -%}{{- " + gen + " -}}{%- endif -%}" if gen else "")


def _by_role(cases: dict[str, str], default: str = "") -> str:
    """An if/elif chain emitting the expression for `m.role`; `default` for other roles."""
    chain = "".join(
        f"{{%- {'if' if i == 0 else 'elif'} m.role == '{role}' -%}}{{{{- {expr} -}}}}"
        for i, (role, expr) in enumerate(cases.items())
    )
    return chain + (f"{{%- else -%}}{{{{- {default} -}}}}" if default else "") + "{%- endif -%}"


def _llama2(system: bool, bos_inside: bool, strip: bool) -> str:
    c = "(c|trim)" if strip else "c"
    sys = rf"'<<SYS>>\n' + {c} + '\n<</SYS>>\n\n'" if system else rf"{c} + '\n'"
    return (
        "{%- set ns = namespace(inside=true) -%}{{- '[INST] ' -}}"
        "{%- for m in messages -%}{%- set c = m.content -%}"
        "{%- if not ns.inside -%}{%- set ns.inside = true -%}"
        f"{{{{- {'<s>[INST] ' if bos_inside else '[INST] '!r} -}}}}{{%- endif -%}}"
        f"{{%- if m.role == 'system' -%}}{{{{- {sys} -}}}}"
        f"{{%- elif m.role == 'user' -%}}{{{{- {c} + ' [/INST]' -}}}}"
        f"{{%- else -%}}{{{{- {c} + '</s>' -}}}}{{%- set ns.inside = false -%}}{{%- endif -%}}"
        "{%- endfor -%}"
    )


def _mistral(lead: str, trail: str, trim_assistant: bool) -> str:
    a = "(c|trim)" if trim_assistant else "c"
    return (
        "{%- set ns = namespace(inside=false) -%}"
        "{%- for m in messages -%}{%- set c = m.content -%}"
        f"{{%- if not ns.inside -%}}{{{{- {lead + '[INST]' + trail!r} -}}}}{{%- set ns.inside = true -%}}"
        "{%- endif -%}"
        r"{%- if m.role == 'system' -%}{{- c + '\n\n' -}}"
        f"{{%- elif m.role == 'user' -%}}{{{{- c + {lead + '[/INST]'!r} -}}}}"
        f"{{%- else -%}}{{{{- {trail!r} + {a} + '</s>' -}}}}{{%- set ns.inside = false -%}}{{%- endif -%}}"
        "{%- endfor -%}"
    )


def _mistral_v7(t: str) -> str:
    return _each(
        _by_role(
            {
                "system": f"'[SYSTEM_PROMPT]{t}' + c + '[/SYSTEM_PROMPT]'",
                "user": f"'[INST]{t}' + c + '[/INST]'",
            },
            f"'{t}' + c + '</s>'",
        )
    )


def _granite(tool_call_as_assistant: bool) -> str:
    if tool_call_as_assistant:
        head = _by_role(
            {"assistant_tool_call": "'<|start_of_role|>assistant<|end_of_role|><|tool_call|>'"},
            "'<|start_of_role|>' + m.role + '<|end_of_role|>'",
        )
    else:
        head = (
            "{{- '<|start_of_role|>' + m.role + '<|end_of_role|>' -}}"
            "{%- if m.role == 'assistant_tool_call' -%}{{- '<|tool_call|>' -}}{%- endif -%}"
        )
    return _each(head + r"{{- c + '<|end_of_text|>\n' -}}", "'<|start_of_role|>assistant<|end_of_role|>'")


def _bailing(think: bool) -> str:
    role = "{%- set r = 'HUMAN' if m.role == 'user' else m.role|upper -%}"
    return _each(
        role + "{{- '<role>' + r + '</role>' + c -}}",
        "'<role>ASSISTANT</role>" + ("<think>'" if think else "'"),
    )


_HY = "<｜hy_place▁holder▁no▁{}｜>"
_TRIM = "(c|trim)"

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": CHATML,
    "llama2": _llama2(system=False, bos_inside=False, strip=False),
    "llama2-sys": _llama2(system=True, bos_inside=False, strip=False),
    "llama2-sys-bos": _llama2(system=True, bos_inside=True, strip=False),
    "llama2-sys-strip": _llama2(system=True, bos_inside=False, strip=True),
    "mistral-v1": _mistral(" ", " ", trim_assistant=False),
    "mistral-v3": _mistral("", " ", trim_assistant=True),
    "mistral-v3-tekken": _mistral("", "", trim_assistant=False),
    "mistral-v7": _mistral_v7(" "),
    "mistral-v7-tekken": _mistral_v7(""),
    "phi3": _each(r"{{- '<|' + m.role + '|>\n' + c + '<|end|>\n' -}}", r"'<|assistant|>\n'"),
    "phi4": _each(
        "{{- '<|im_start|>' + m.role + '<|im_sep|>' + c + '<|im_end|>' -}}",
        "'<|im_start|>assistant<|im_sep|>'",
    ),
    "falcon3": _each(r"{{- '<|' + m.role + '|>\n' + c + '\n' -}}", r"'<|assistant|>\n'"),
    "zephyr": _each(r"{{- '<|' + m.role + '|>\n' + c + '<|endoftext|>\n' -}}", r"'<|assistant|>\n'"),
    "monarch": _each(
        r"{{- ('' if loop.first else '<s>') + m.role + '\n' + c + '</s>\n' -}}", r"'<s>assistant\n'"
    ),
    "gemma": (
        "{%- set ns = namespace(sys='') -%}"
        + _each(
            "{%- if m.role == 'system' -%}{%- set ns.sys = ns.sys + (c|trim) -%}{%- else -%}"
            "{%- set r = 'model' if m.role == 'assistant' else m.role -%}"
            r"{{- '<start_of_turn>' + r + '\n' -}}"
            r"{%- if ns.sys and r != 'model' -%}{{- ns.sys + '\n\n' -}}{%- set ns.sys = '' -%}{%- endif -%}"
            r"{{- (c|trim) + '<end_of_turn>\n' -}}{%- endif -%}",
            r"'<start_of_turn>model\n'",
        )
    ),
    "orion": (
        "{%- set ns = namespace(sys='') -%}"
        + _each(
            "{%- if m.role == 'system' -%}{%- set ns.sys = ns.sys + c -%}"
            "{%- elif m.role == 'user' -%}{{- 'Human: ' -}}"
            r"{%- if ns.sys -%}{{- ns.sys + '\n\n' -}}{%- set ns.sys = '' -%}{%- endif -%}"
            r"{{- c + '\n\nAssistant: </s>' -}}{%- else -%}{{- c + '</s>' -}}{%- endif -%}"
        )
    ),
    "openchat": _each(
        _by_role(
            {"system": "c + '<|end_of_turn|>'"},
            "'GPT4 Correct ' + m.role[:1]|upper + m.role[1:] + ': ' + c + '<|end_of_turn|>'",
        ),
        "'GPT4 Correct Assistant:'",
    ),
    "vicuna": _each(
        _by_role(
            {
                "system": r"c + '\n\n'",
                "user": r"'USER: ' + c + '\n'",
                "assistant": r"'ASSISTANT: ' + c + '</s>\n'",
            }
        ),
        "'ASSISTANT:'",
    ),
    "vicuna-orca": _each(
        _by_role(
            {
                "system": r"'SYSTEM: ' + c + '\n'",
                "user": r"'USER: ' + c + '\n'",
                "assistant": r"'ASSISTANT: ' + c + '</s>\n'",
            }
        ),
        "'ASSISTANT:'",
    ),
    "deepseek": _each(
        _by_role(
            {
                "system": "c",
                "user": r"'### Instruction:\n' + c + '\n'",
                "assistant": r"'### Response:\n' + c + '\n<|EOT|>\n'",
            }
        ),
        r"'### Response:\n'",
    ),
    "deepseek2": _each(
        _by_role(
            {
                "system": r"c + '\n\n'",
                "user": r"'User: ' + c + '\n\n'",
                "assistant": "'Assistant: ' + c + '<｜end▁of▁sentence｜>'",
            }
        ),
        "'Assistant:'",
    ),
    "deepseek3": _each(
        _by_role(
            {
                "system": r"c + '\n\n'",
                "user": "'<｜User｜>' + c",
                "assistant": "'<｜Assistant｜>' + c + '<｜end▁of▁sentence｜>'",
            }
        ),
        "'<｜Assistant｜>'",
    ),
    "deepseek-ocr": _each("{{- c -}}"),
    "command-r": _each(
        _by_role(
            {
                r: f"'<|START_OF_TURN_TOKEN|><|{tok}_TOKEN|>' + {_TRIM} + '<|END_OF_TURN_TOKEN|>'"
                for r, tok in (("system", "SYSTEM"), ("user", "USER"), ("assistant", "CHATBOT"))
            }
        ),
        "'<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'",
    ),
    "llama3": _each(
        r"{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' + (c|trim) + '<|eot_id|>' -}}",
        r"'<|start_header_id|>assistant<|end_header_id|>\n\n'",
    ),
    "llama4": _each(
        r"{{- '<|header_start|>' + m.role + '<|header_end|>\n\n' + (c|trim) + '<|eot|>' -}}",
        r"'<|header_start|>assistant<|header_end|>\n\n'",
    ),
    "chatglm3": "{{- '[gMASK]sop' -}}" + _each(r"{{- '<|' + m.role + '|>\n ' + c -}}", "'<|assistant|>'"),
    "chatglm4": "{{- '[gMASK]<sop>' -}}" + _each(r"{{- '<|' + m.role + '|>\n' + c -}}", r"'<|assistant|>\n'"),
    "glmedge": _each(r"{{- '<|' + m.role + '|>\n' + c -}}", "'<|assistant|>'"),
    "minicpm": _each(_by_role({"user": "'<用户>' + (c|trim) + '<AI>'"}, _TRIM)),
    "exaone3": _each(
        _by_role(
            {
                "system": r"'[|system|]' + (c|trim) + '[|endofturn|]\n'",
                "user": r"'[|user|]' + (c|trim) + '\n'",
                "assistant": r"'[|assistant|]' + (c|trim) + '[|endofturn|]\n'",
            }
        ),
        "'[|assistant|]'",
    ),
    "exaone4": _each(
        _by_role(
            {
                "system": r"'[|system|]' + (c|trim) + '[|endofturn|]\n'",
                "user": r"'[|user|]' + (c|trim) + '\n'",
                "assistant": r"'[|assistant|]' + (c|trim) + '[|endofturn|]\n'",
                "tool": r"'[|tool|]' + (c|trim) + '[|endofturn|]\n'",
            }
        ),
        "'[|assistant|]'",
    ),
    "exaone-moe": _each(
        "{%- if m.role in ('system', 'user', 'assistant', 'tool') -%}"
        r"{{- '<|' + m.role + '|>\n' + (c|trim) + '<|endofturn|>\n' -}}{%- endif -%}",
        r"'<|assistant|>\n'",
    ),
    "rwkv-world": _each(
        _by_role(
            {
                "system": r"'System: ' + (c|trim) + '\n\n'",
                "user": r"'User: ' + (c|trim) + '\n\n' + ('Assistant:' if loop.last else '')",
                "assistant": r"'Assistant: ' + (c|trim) + '\n\n'",
            }
        )
    ),
    "granite": _granite(tool_call_as_assistant=False),
    "granite-4.0": _granite(tool_call_as_assistant=True),
    "granite-4.1": _granite(tool_call_as_assistant=True),
    "gigachat": (
        "{%- set has_sys = messages and messages[0].role == 'system' -%}"
        "{{- '<s>' + (messages[0].content + '<|message_sep|>' if has_sys else '') -}}"
        + _each(
            "{%- if not (has_sys and loop.first) -%}"
            + _by_role(
                {
                    "user": "'user<|role_sep|>' + c + '<|message_sep|>available functions<|role_sep|>[]"
                    "<|message_sep|>'",
                    "assistant": "'assistant<|role_sep|>' + c + '<|message_sep|>'",
                }
            )
            + "{%- endif -%}",
            "'assistant<|role_sep|>'",
        )
    ),
    "megrez": _each(
        "{{- '<|role_start|>' + m.role + '<|role_end|>' + c + '<|turn_end|>' -}}",
        "'<|role_start|>assistant<|role_end|>'",
    ),
    "yandex": _each(
        _by_role({"user": r"' Пользователь: ' + c + '\n\n'", "assistant": r"' Ассистент: ' + c + '\n\n'"}),
        "' Ассистент:[SEP]'",
    ),
    "bailing": _bailing(think=False),
    "bailing-think": _bailing(think=True),
    "bailing2": (
        "{%- if not (messages and messages[0].role == 'system') -%}"
        "{{- '<role>SYSTEM</role>detailed thinking off<|role_end|>' -}}{%- endif -%}"
        + _each(
            "{%- set r = 'HUMAN' if m.role == 'user' else m.role|upper -%}"
            "{{- '<role>' + r + '</role>' + c + '<|role_end|>' -}}",
            "'<role>ASSISTANT</role>'",
        )
    ),
    "smolvlm": "{{- '<|im_start|>' -}}"
    + _each(
        _by_role(
            {"system": r"c + '\n\n'", "user": r"'User: ' + c + '<end_of_utterance>\n'"},
            r"'Assistant: ' + c + '<end_of_utterance>\n'",
        ),
        "'Assistant:'",
    ),
    "hunyuan-moe": _each(
        _by_role(
            {"system": "'<|startoftext|>' + c + '<|extra_4|>'", "assistant": "c + '<|eos|>'"},
            "'<|startoftext|>' + c + '<|extra_0|>'",
        )
    ),
    "hunyuan-dense": _each(
        f"{{%- if loop.first and m.role == 'system' -%}}{{{{- c + '{_HY.format(3)}' -}}}}{{%- endif -%}}"
        + _by_role(
            {
                "assistant": f"'<｜hy_Assistant｜>' + c + '{_HY.format(2)}'",
                "user": "'<｜hy_User｜>' + c + '<｜hy_Assistant｜>'",
            }
        )
    ),
    "hunyuan-vl": "{{- '<｜hy_begin▁of▁sentence｜>' -}}"
    + _each(
        f"{{%- if loop.first and m.role == 'system' -%}}{{{{- c + '{_HY.format(3)}' -}}}}{{%- else -%}}"
        + _by_role({"user": "c + '<｜hy_User｜>'", "assistant": "c + '<｜hy_Assistant｜>'"})
        + "{%- endif -%}"
    ),
    "gpt-oss": _each(
        "{{- '<|start|>' + m.role + '<|message|>' + c"
        " + ('<|return|>' if m.role == 'assistant' else '<|end|>') -}}",
        "'<|start|>assistant'",
    ),
    "kimi-k2": _each(
        _by_role(
            {
                "system": "'<|im_system|>system<|im_middle|>'",
                "user": "'<|im_user|>user<|im_middle|>'",
                "assistant": "'<|im_assistant|>assistant<|im_middle|>'",
                "tool": "'<|im_system|>tool<|im_middle|>'",
            }
        )
        + "{{- c + '<|im_end|>' -}}",
        "'<|im_assistant|>assistant<|im_middle|>'",
    ),
    "seed_oss": _each(
        r"{{- '<seed:bos>' + m.role + '\n' + ((c|trim) if m.role == 'assistant' else c)"
        " + '<seed:eos>' -}}",
        r"'<seed:bos>assistant\n'",
    ),
    "grok-2": _each(
        _by_role(
            {
                "system": r"'System: ' + (c|trim) + '<|separator|>\n\n'",
                "user": r"'Human: ' + (c|trim) + '<|separator|>\n\n'",
                "assistant": r"'Assistant: ' + c + '<|separator|>\n\n'",
            }
        ),
        "'Assistant:'",
    ),
    "pangu-embedded": _each(
        "{%- if loop.first and m.role != 'system' -%}{{- '[unused9]系统：[unused10]' -}}{%- endif -%}"
        + _by_role(
            {
                r: f"'[unused9]{name}：' + c + '[unused10]'"
                for r, name in (
                    ("system", "系统"),
                    ("user", "用户"),
                    ("assistant", "助手"),
                    ("tool", "工具"),
                    ("function", "方法"),
                )
            }
        ),
        "'[unused9]助手：'",
    ),
    "solar-open": _each(
        "{{- '<|begin|>' + m.role + '<|content|>' + c + '<|end|>' -}}", "'<|begin|>assistant'"
    ),
}
