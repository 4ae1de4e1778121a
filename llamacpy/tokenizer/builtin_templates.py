"""Built-in chat templates: Jinja versions of llama.cpp's named formats (src/llama-chat.cpp, llm_chat_apply_template),
so that `--chat-template NAME` gives the same prompt as llama.cpp. ChatML is llama.cpp's own Jinja fallback, byte
for byte. Long on purpose: one entry per format llama.cpp names, kept together so they read as its table."""

from __future__ import annotations

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
