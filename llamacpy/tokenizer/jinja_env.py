"""The Jinja environment chat templates render in, as HF transformers sets it up (a sandbox, trim/lstrip blocks,
loopcontrols, `tojson` without HTML escaping, `raise_exception`, `strftime_now`, a no-op `{% generation %}` block),
with the leniency of llama.cpp's own engine (chat_template.py says which), and errors that name the template line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

TEMPLATE_FILENAME = "<template>"  # the name Jinja gives frames of templates built with from_string


class ChatTemplateError(ValueError):
    """A chat template failed to compile or render (syntax error, `raise_exception`, bad input)."""



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


def environment() -> SandboxedEnvironment:
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
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def template_error(exc: BaseException, what: str) -> ChatTemplateError:
    if isinstance(exc, ChatTemplateError):
        return exc
    line = getattr(exc, "lineno", None) or _template_line(exc)
    where = f" at line {line}" if line else ""
    return ChatTemplateError(f"chat template {what} error{where}: {type(exc).__name__}: {exc}")
