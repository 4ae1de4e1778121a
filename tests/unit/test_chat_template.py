"""Chat templates: llama.cpp's 70 real templates, exact prompts from llama.cpp's tests, real GGUF files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.tokenizer.chat_template import ChatTemplate, ChatTemplateError

# the conversation of llama.cpp's tests/test-chat-template.cpp
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question"},
]

PLAIN_CHAT = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Hello, how are you?"},
    {"role": "assistant", "content": "I am fine, thank you!"},
    {"role": "user", "content": "What is the capital of France?"},
]

# vendor/llama.cpp/models/templates/*.jinja of llama-cpp-python 0.3.36
TEMPLATE_FILES = [
    "Apertus-8B-Instruct",
    "Apriel-1.6-15b-Thinker-fixed",
    "Bielik-11B-v3.0-Instruct",
    "ByteDance-Seed-OSS",
    "Cohere2MoE",
    "CohereForAI-c4ai-command-r-plus-tool_use",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
    "GLM-4.6",
    "GLM-4.7-Flash",
    "GigaChat3-10B-A1.8B",
    "GigaChat3.1-10B-A1.8B",
    "HuggingFaceTB-SmolLM3-3B",
    "Kimi-K2-Instruct",
    "Kimi-K2-Thinking",
    "Kimi-K3",
    "LFM2-8B-A1B",
    "LFM2.5-8B-A1B",
    "LFM2.5-Instruct",
    "MiMo-VL",
    "MiniMax-M1",
    "MiniMax-M2",
    "MiniMax-M3",
    "Mistral-Small-3.2-24B-Instruct-2506",
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "NVIDIA-Nemotron-Nano-v2",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "Qwen-QwQ-32B",
    "Qwen-Qwen2.5-7B-Instruct",
    "Qwen-Qwen3-0.6B",
    "Qwen3-Coder",
    "Qwen3.5-4B",
    "Reka-Edge",
    "Spark2.5",
    "StepFun3.5-Flash",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai-DeepSeek-V3.1",
    "deepseek-ai-DeepSeek-V3.2",
    "deepseek-ai-DeepSeek-V4-Flash-0731",
    "deepseek-ai-DeepSeek-V4",
    "fireworks-ai-llama-3-firefunction-v2",
    "google-gemma-2-2b-it",
    "google-gemma-4-31B-it-interleaved",
    "google-gemma-4-31B-it",
    "ibm-granite-granite-3.3-2B-Instruct",
    "ibm-granite-granite-4.0",
    "ibm-granite-granite-4.1",
    "inclusionai-ling-3.0-flash",
    "llama-cpp-deepseek-r1",
    "llama-cpp-rwkv-world",
    "meetkai-functionary-medium-v3.1",
    "meetkai-functionary-medium-v3.2",
    "meta-llama-Llama-3.1-8B-Instruct",
    "meta-llama-Llama-3.2-3B-Instruct",
    "meta-llama-Llama-3.3-70B-Instruct",
    "microsoft-Phi-3.5-mini-instruct",
    "mistralai-Ministral-3-14B-Reasoning-2512",
    "mistralai-Mistral-Nemo-Instruct-2407",
    "moonshotai-Kimi-K2",
    "muse-glimmer",
    "openai-gpt-oss-120b",
    "openbmb-MiniCPM5-1B",
    "poolside-Laguna-S-2.1",
    "poolside-Laguna-XS-2.1",
    "poolside-Laguna-XS.2",
    "tencent-Hy3",
    "unsloth-Apriel-1.5",
    "unsloth-mistral-Devstral-Small-2507",
    "upstage-Solar-Open-100B",
]

# templates that cannot render a plain chat, with the reason (none today; see test_real_template_renders)
KNOWN_FAILURES: dict[str, str] = {}


@dataclass(frozen=True)
class LlamaCppCase:
    name: str
    template: str
    expected: str
    bos_token: str = ""
    eos_token: str = ""
    extra_turns: tuple[tuple[str, str], ...] = ()


# template sources and expected prompts copied from llama.cpp's tests/test-chat-template.cpp (its Jinja
# path: expected_output_jinja, or expected_output where that is empty); the granite case adds a tool turn
JINJA_CASES = [
    LlamaCppCase(
        name="teknium/OpenHermes-2.5-Mistral-7B",
        template=(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
            "'<|im_start|>assistant\\n' }}{% endif %}"
        ),
        expected=(
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\n"
            "Another question<|im_end|>\n<|im_start|>assistant\n"
        ),
    ),
    LlamaCppCase(
        name="mistralai/Mistral-7B-Instruct-v0.2",
        template=(
            "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
            "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
            "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
            "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
            "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and "
            "assistant roles are supported!') }}{% endif %}{% endfor %}"
        ),
        expected=(
            "[INST] You are a helpful assistant\n"
            "Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] "
            "Another question [/INST]"
        ),
        eos_token="</s>",
    ),
    LlamaCppCase(
        name="TheBloke/FusionNet_34Bx2_MoE-AWQ",
        template=(
            "{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n"
            "{%- if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n"
            "{%- else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n"
            "{% elif messages[idx]['role'] == 'system' %}\n"
            "{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n"
            "{%- elif messages[idx]['role'] == 'assistant' -%}\n"
            "{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}"
        ),
        expected=(
            "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
            "Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]    I am an assistant    "
            "</s><s>[INST] Another question [/INST]"
        ),
        bos_token="<s>",
        eos_token="</s>",
    ),
    LlamaCppCase(
        name="bofenghuang/vigogne-2-70b-chat",
        template=(
            "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = "
            "messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif true == true "
            "and not '<<SYS>>' in messages[0]['content'] %}{% set loop_messages = messages %}{% set "
            "system_message = 'Vous êtes Vigogne, un assistant IA créé par Zaion Lab. Vous suivez "
            "extrêmement bien les instructions. Aidez autant que vous le pouvez.' %}{% else %}{% set "
            "loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in "
            "loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
            "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }"
            "}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
            "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set "
            "content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] "
            "' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' "
            "+ content.strip() + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ ' '  "
            "+ content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
        ),
        expected=(
            "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
            "Hello [/INST] Hi there </s>[INST] Who are you [/INST] I am an assistant </s>[INST] "
            "Another question [/INST]"
        ),
        eos_token="</s>",
    ),
    LlamaCppCase(
        name="mlabonne/AlphaMonarch-7B",
        template=(
            "{% for message in messages %}{{bos_token + message['role'] + '\\n' + message['content'] "
            "+ eos_token + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ bos_token + "
            "'assistant\\n' }}{% endif %}"
        ),
        expected=(
            "<s>system\nYou are a helpful assistant</s>\n<s>user\nHello</s>\n<s>assistant\nHi there</s>\n"
            "<s>user\nWho are you</s>\n<s>assistant\n   I am an assistant   </s>\n<s>user\n"
            "Another question</s>\n<s>assistant\n"
        ),
        bos_token="<s>",
        eos_token="</s>",
    ),
    LlamaCppCase(
        name="google/gemma-7b-it",
        template=(
            "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') "
            "}}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
            "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
            "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') "
            "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
            "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% "
            "endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
        ),
        expected=(
            "<start_of_turn>user\nYou are a helpful assistant\nHello<end_of_turn>\n<start_of_turn>model\n"
            "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"
            "I am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"
            "<start_of_turn>model\n"
        ),
    ),
    LlamaCppCase(
        name="OrionStarAI/Orion-14B-Chat",
        template=(
            "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if "
            "message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nAssistant: ' + "
            "eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }"
            "}{% endif %}{% endfor %}"
        ),
        expected=(
            "Human: You are a helpful assistant\nHello\n\nAssistant: </s>Hi there</s>Human: Who are you\n\n"
            "Assistant: </s>   I am an assistant   </s>Human: Another question\n\nAssistant: </s>"
        ),
        eos_token="</s>",
    ),
    LlamaCppCase(
        name="openchat/openchat-3.5-0106",
        template=(
            "{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + "
            "message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}{% "
            "if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}"
        ),
        expected=(
            "GPT4 Correct System: You are a helpful assistant<|end_of_turn|>GPT4 Correct User: "
            "Hello<|end_of_turn|>GPT4 Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct User: "
            "Who are you<|end_of_turn|>GPT4 Correct Assistant:    I am an assistant   "
            "<|end_of_turn|>GPT4 Correct User: Another question<|end_of_turn|>GPT4 Correct Assistant:"
        ),
    ),
    LlamaCppCase(
        name="Llama-3",
        template=(
            "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
            "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n"
            "'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
            "bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ "
            "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        ),
        expected=(
            "<|start_header_id|>system<|end_header_id|>\n\n"
            "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
            "Hi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            "Who are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
            "I am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            "Another question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
    ),
    LlamaCppCase(
        name="Phi-3-mini",
        template=(
            "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
            "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n"
            "'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n"
            "'}}{% endif %}{% endfor %}"
        ),
        expected=(
            "<|user|>\nYou are a helpful assistant\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
            "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\n"
            "Another question<|end|>\n<|assistant|>\n"
        ),
    ),
    LlamaCppCase(
        name="ChatGLM3",
        template=(
            "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n"
            " {{ message['content'] }}{% else %}<|{{ message['role'] }}|>\n"
            " {{ message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
            "<|assistant|>{% endif %}"
        ),
        expected=(
            "[gMASK]sop<|system|>\n You are a helpful assistant<|user|>\n Hello<|assistant|>\n"
            " Hi there<|user|>\n Who are you<|assistant|>\n    I am an assistant   <|user|>\n"
            " Another question<|assistant|>"
        ),
    ),
    LlamaCppCase(
        name="DeepSeek-V2",
        template=(
            "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% "
            "endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
            "{{ 'User: ' + message['content'] + '\n\n"
            "' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + "
            "eos_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n"
            "' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
        ),
        expected=(
            "You are a helpful assistant\n\nUser: Hello\n\n"
            "Assistant: Hi there<｜end▁of▁sentence｜>User: Who are you\n\n"
            "Assistant:    I am an assistant   <｜end▁of▁sentence｜>User: Another question\n\nAssistant:"
        ),
        eos_token="<｜end▁of▁sentence｜>",
    ),
    LlamaCppCase(
        name="mistralai/Mistral-Large-Instruct-2411",
        template=(
            "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ "
            "'[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ "
            "'[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] "
            "== 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% else %}{{ "
            "raise_exception('Only user, system and assistant roles are supported!') }}{% endif %}{% "
            "endfor %}"
        ),
        expected=(
            "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi "
            "there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"
        ),
        eos_token="</s>",
    ),
    LlamaCppCase(
        name="phi-4",
        template=(
            "{% for message in messages %}{% if (message['role'] == 'system') %}"
            "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif "
            "(message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + "
            "'<|im_end|><|im_start|>assistant<|im_sep|>'}}{% elif (message['role'] == 'assistant') %}"
            "{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}"
        ),
        expected=(
            "<|im_start|>system<|im_sep|>You are a helpful "
            "assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_se"
            "p|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are "
            "you<|im_end|><|im_start|>assistant<|im_sep|>   I am an assistant   "
            "<|im_end|><|im_start|>user<|im_sep|>Another question<|im_end|><|im_start|>assistant<|im_sep|>"
        ),
    ),
    LlamaCppCase(
        name="inclusionAI/Ling-lite",
        template=(
            "{% for message in messages %}{% set role = message['role'] | lower %}{% if role == "
            "'user' %}{% set role = 'HUMAN' %}{% endif %}{% set role = role | upper %}{{ '<role>' + "
            "role + '</role>' + message['content'] }}{% endfor %}{% if add_generation_prompt %}{{ "
            "'<role>ASSISTANT</role>' }}{% endif %}"
        ),
        expected=(
            "<role>SYSTEM</role>You are a helpful "
            "assistant<role>HUMAN</role>Hello<role>ASSISTANT</role>Hi there<role>HUMAN</role>Who are "
            "you<role>ASSISTANT</role>   I am an assistant   <role>HUMAN</role>Another "
            "question<role>ASSISTANT</role>"
        ),
    ),
    LlamaCppCase(
        name="ByteDance-Seed/Seed-OSS-36B-Instruct",
        template=(
            '{# <seed:bos> #}{%- for message in messages %}{%- if message.role in ["user", "system"] '
            '%}{{ bos_token + message.role + "\\n" + message.content + eos_token }}{%- elif '
            'message.role == "assistant" %}{{ bos_token + message.role }}{%- if message.content is '
            'defined and message.content is string and message.content|trim|length > 0 %}{{ "\\n" + '
            "message.content|trim + eos_token }}{%- endif %}{%- else %}{{ bos_token + message.role + "
            '"\\n" + message.content + eos_token }}{%- endif %}{%- endfor %}{%- if '
            'add_generation_prompt %}{{ bos_token + "assistant\\n" }}{%- endif %}'
        ),
        expected=(
            "<seed:bos>system\nYou are a helpful assistant<seed:eos><seed:bos>user\n"
            "Hello<seed:eos><seed:bos>assistant\nHi there<seed:eos><seed:bos>user\n"
            "Who are you<seed:eos><seed:bos>assistant\nI am an assistant<seed:eos><seed:bos>user\n"
            "Another question<seed:eos><seed:bos>assistant\n"
        ),
        bos_token="<seed:bos>",
        eos_token="<seed:eos>",
    ),
    LlamaCppCase(
        name="ibm-granite/granite-3.x",
        template=(
            "{%- for message in messages %}\n    {%- if message['role'] == 'assistant_tool_call' %}\n"
            "    {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' + message['content'] + "
            "'<|end_of_text|>\\n' }}\n    {%- else %}\n"
            "    {{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] "
            "+ '<|end_of_text|>\\n' }}\n    {%- endif %}\n"
            "    {%- if loop.last and add_generation_prompt %}\n"
            "    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n    {%- endif %}\n{%- endfor %}"
        ),
        expected=(
            "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n"
            "<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n"
            "<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n"
            "<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n"
            "<|start_of_role|>user<|end_of_role|>What is the weather?<|end_of_text|>\n"
            '<|start_of_role|>assistant<|end_of_role|><|tool_call|>[{"name": "get_weather", '
            '"arguments": {"location": "NYC"}}]<|end_of_text|>\n'
            '<|start_of_role|>tool_response<|end_of_role|>{"temperature": 72}<|end_of_text|>\n'
            "<|start_of_role|>assistant<|end_of_role|>"
        ),
        extra_turns=(
            ("user", "What is the weather?"),
            ("assistant_tool_call", '[{"name": "get_weather", "arguments": {"location": "NYC"}}]'),
            ("tool_response", '{"temperature": 72}'),
        ),
    ),
]

# llama.cpp's built-in formats (src/llama-chat.cpp) on CONVERSATION: expected_output of the same tests
BUILTIN_EXPECTED = {
    "chatml": (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\n"
        "Another question<|im_end|>\n<|im_start|>assistant\n"
    ),
    "llama2": (
        "[INST] You are a helpful assistant\n"
        "Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] "
        "Another question [/INST]"
    ),
    "llama2-sys-bos": (
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
        "Hello [/INST]Hi there</s><s>[INST] Who are you [/INST]   I am an assistant   "
        "</s><s>[INST] Another question [/INST]"
    ),
    "llama2-sys-strip": (
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
        "Hello [/INST]Hi there</s>[INST] Who are you [/INST]I am an assistant</s>[INST] Another "
        "question [/INST]"
    ),
    "monarch": (
        "system\nYou are a helpful assistant</s>\n<s>user\nHello</s>\n<s>assistant\nHi there</s>\n"
        "<s>user\nWho are you</s>\n<s>assistant\n   I am an assistant   </s>\n<s>user\n"
        "Another question</s>\n<s>assistant\n"
    ),
    "gemma": (
        "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
        "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"
        "I am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"
        "<start_of_turn>model\n"
    ),
    "orion": (
        "Human: You are a helpful assistant\n\nHello\n\nAssistant: </s>Hi there</s>Human: Who are you\n"
        "\nAssistant: </s>   I am an assistant   </s>Human: Another question\n\nAssistant: </s>"
    ),
    "openchat": (
        "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: Hello<|end_of_turn|>GPT4 "
        "Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct User: Who are "
        "you<|end_of_turn|>GPT4 Correct Assistant:    I am an assistant   <|end_of_turn|>GPT4 "
        "Correct User: Another question<|end_of_turn|>GPT4 Correct Assistant:"
    ),
    "deepseek": (
        "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n"
        "### Instruction:\nWho are you\n### Response:\n   I am an assistant   \n<|EOT|>\n"
        "### Instruction:\nAnother question\n### Response:\n"
    ),
    "vicuna": (
        "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\n"
        "ASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:"
    ),
    "vicuna-orca": (
        "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\n"
        "ASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:"
    ),
    "command-r": (
        "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a helpful "
        "assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TO"
        "KEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi "
        "there<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Who are "
        "you<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>I am an "
        "assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Another "
        "question<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    ),
    "llama3": (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        "Hi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Who are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        "I am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Another question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "phi3": (
        "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\n"
        "Hi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n"
        "<|user|>\nAnother question<|end|>\n<|assistant|>\n"
    ),
    "chatglm3": (
        "[gMASK]sop<|system|>\n You are a helpful assistant<|user|>\n Hello<|assistant|>\n"
        " Hi there<|user|>\n Who are you<|assistant|>\n    I am an assistant   <|user|>\n"
        " Another question<|assistant|>"
    ),
    "chatglm4": (
        "[gMASK]<sop><|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\n"
        "Hi there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\n"
        "Another question<|assistant|>\n"
    ),
    "glmedge": (
        "<|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there<|user|>\n"
        "Who are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question<|assistant|>"
    ),
    "minicpm": (
        "You are a helpful assistant<用户>Hello<AI>Hi there<用户>Who are you<AI>I am an "
        "assistant<用户>Another question<AI>"
    ),
    "deepseek2": (
        "You are a helpful assistant\n\nUser: Hello\n\n"
        "Assistant: Hi there<｜end▁of▁sentence｜>User: Who are you\n\n"
        "Assistant:    I am an assistant   <｜end▁of▁sentence｜>User: Another question\n\nAssistant:"
    ),
    "granite": (
        "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>"
    ),
    "mistral-v1": (
        " [INST] You are a helpful assistant\n\n"
        "Hello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   </s> "
        "[INST] Another question [/INST]"
    ),
    "mistral-v3": (
        "[INST] You are a helpful assistant\n\n"
        "Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] Another "
        "question[/INST]"
    ),
    "mistral-v3-tekken": (
        "[INST]You are a helpful assistant\n\n"
        "Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   "
        "</s>[INST]Another question[/INST]"
    ),
    "mistral-v7": (
        "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi "
        "there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"
    ),
    "gigachat": (
        "<s>You are a helpful assistant<|message_sep|>user<|role_sep|>Hello<|message_sep|>availab"
        "le functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>Hi "
        "there<|message_sep|>user<|role_sep|>Who are you<|message_sep|>available "
        "functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>   I am an assistant   "
        "<|message_sep|>user<|role_sep|>Another question<|message_sep|>available "
        "functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>"
    ),
    "megrez": (
        "<|role_start|>system<|role_end|>You are a helpful "
        "assistant<|turn_end|><|role_start|>user<|role_end|>Hello<|turn_end|><|role_start|>assist"
        "ant<|role_end|>Hi there<|turn_end|><|role_start|>user<|role_end|>Who are "
        "you<|turn_end|><|role_start|>assistant<|role_end|>   I am an assistant   "
        "<|turn_end|><|role_start|>user<|role_end|>Another "
        "question<|turn_end|><|role_start|>assistant<|role_end|>"
    ),
    "phi4": (
        "<|im_start|>system<|im_sep|>You are a helpful "
        "assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_se"
        "p|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are "
        "you<|im_end|><|im_start|>assistant<|im_sep|>   I am an assistant   "
        "<|im_end|><|im_start|>user<|im_sep|>Another question<|im_end|><|im_start|>assistant<|im_sep|>"
    ),
    "yandex": (
        " Пользователь: Hello\n\n Ассистент: Hi there\n\n Пользователь: Who are you\n\n"
        " Ассистент:    I am an assistant   \n\n Пользователь: Another question\n\n Ассистент:[SEP]"
    ),
    "bailing": (
        "<role>SYSTEM</role>You are a helpful "
        "assistant<role>HUMAN</role>Hello<role>ASSISTANT</role>Hi there<role>HUMAN</role>Who are "
        "you<role>ASSISTANT</role>   I am an assistant   <role>HUMAN</role>Another "
        "question<role>ASSISTANT</role>"
    ),
    "seed_oss": (
        "<seed:bos>system\nYou are a helpful assistant<seed:eos><seed:bos>user\n"
        "Hello<seed:eos><seed:bos>assistant\nHi there<seed:eos><seed:bos>user\n"
        "Who are you<seed:eos><seed:bos>assistant\nI am an assistant<seed:eos><seed:bos>user\n"
        "Another question<seed:eos><seed:bos>assistant\n"
    ),
}


QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _templates_dir(llama_cpp_data: Path) -> Path:
    return llama_cpp_data / "models" / "templates"


def _render_file(path: Path) -> str:
    return ChatTemplate(path.read_text(encoding="utf-8"), "<s>", "</s>").render(PLAIN_CHAT)


# -- llama.cpp's 70 real templates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[n], strict=True))
        if n in KNOWN_FAILURES
        else n
        for n in TEMPLATE_FILES
    ],
)
def test_real_template_renders_plain_chat(llama_cpp_data, name):
    out = _render_file(_templates_dir(llama_cpp_data) / f"{name}.jinja")
    for message in PLAIN_CHAT[1:]:
        assert message["content"] in out
    # the system prompt is kept: natively or merged into the first user turn (gemma-2 has no system role)
    assert PLAIN_CHAT[0]["content"] in out


def test_at_least_68_of_the_70_real_templates_render(llama_cpp_data):
    files = sorted(_templates_dir(llama_cpp_data).glob("*.jinja"))
    assert sorted(f.stem for f in files) == sorted(TEMPLATE_FILES)
    rendered = []
    for f in files:
        try:
            out = _render_file(f)
        except ChatTemplateError:
            continue
        if "What is the capital of France?" in out:
            rendered.append(f.stem)
    assert len(rendered) >= 68, sorted(set(TEMPLATE_FILES) - set(rendered))


TOOL_CHAT = [
    {"role": "user", "content": "Weather in Paris?"},
    # as OpenAI clients send it: arguments as a JSON string, content null
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "sunny, 21C"},
]

# templates that render the tool conversation but leave the call out, and why
TOOL_CALLS_NOT_SHOWN = {
    "HuggingFaceTB-SmolLM3-3B": "renders only the assistant content",
    "LFM2-8B-A1B": "expects tool calls written in the content",
    "LFM2.5-Instruct": "expects tool calls written in the content",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": "needs content None; llama.cpp passes '' (so do we)",
    "ibm-granite-granite-3.3-2B-Instruct": "renders only the assistant content",
    "llama-cpp-rwkv-world": "no tool role",
    "microsoft-Phi-3.5-mini-instruct": "no tools",
}


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_real_template_renders_tool_chat(llama_cpp_data, name):
    t = ChatTemplate((_templates_dir(llama_cpp_data) / f"{name}.jinja").read_text(), "<s>", "</s>")
    if name == "google-gemma-2-2b-it":  # rejects any role but user/assistant, as with HF
        with pytest.raises(ChatTemplateError, match="roles must alternate"):
            t.render(TOOL_CHAT, tools=[WEATHER_TOOL])
        return
    out = t.render(TOOL_CHAT, tools=[WEATHER_TOOL])
    assert "Weather in Paris?" in out
    assert '\\"city\\"' not in out  # arguments are never JSON-encoded twice
    if name not in TOOL_CALLS_NOT_SHOWN:
        assert "get_weather" in out and "Paris" in out and "sunny, 21C" in out


# -- exact prompts from llama.cpp's tests ---------------------------------------------------------------


@pytest.mark.parametrize("case", JINJA_CASES, ids=lambda c: c.name)
def test_matches_llama_cpp_jinja_output(case):
    turns = [{"role": r, "content": c} for r, c in case.extra_turns]
    t = ChatTemplate(case.template, case.bos_token, case.eos_token)
    assert t.render(CONVERSATION + turns) == case.expected


@pytest.mark.parametrize("name", sorted(BUILTIN_EXPECTED))
def test_builtin_matches_llama_cpp_format(name):
    assert ChatTemplate.builtin(name).render(CONVERSATION) == BUILTIN_EXPECTED[name]


def test_builtin_unknown_name():
    with pytest.raises(ChatTemplateError, match="unknown chat template 'nope'.*chatml"):
        ChatTemplate.builtin("nope")


def test_every_builtin_renders():
    from llamacpy.tokenizer.builtin_templates import BUILTIN_TEMPLATES

    for name in BUILTIN_TEMPLATES:
        out = ChatTemplate.builtin(name).render(CONVERSATION)
        assert "Another question" in out, name


# -- real models' templates ------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_chatml(smollm2_path):
    t = ChatTemplate.from_gguf(GGUFFile(smollm2_path))
    assert (t.bos_token, t.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert t.render(CONVERSATION[:2]) == (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # without a system message SmolLM2's template adds its own
    assert t.render(CONVERSATION[1:4], add_generation_prompt=False) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
    )


@pytest.mark.slow
def test_qwen25_with_and_without_system(qwen05_path):
    t = ChatTemplate.from_gguf(GGUFFile(qwen05_path))
    assert (t.bos_token, t.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert t.render(CONVERSATION[:4]) == (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert t.render(CONVERSATION[1:2]) == (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.slow
def test_qwen25_tools_and_tool_calls(qwen05_path):
    t = ChatTemplate.from_gguf(GGUFFile(qwen05_path))
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        # OpenAI clients send arguments as a JSON string and content as null
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
    ]
    assert t.render(messages, tools=[WEATHER_TOOL]) == (
        f"<|im_start|>system\n{QWEN_SYSTEM}\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps(WEATHER_TOOL)
        + "\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n"
    )


@pytest.mark.slow
def test_gemma_without_template_falls_back_to_chatml(gemma_path):
    t = ChatTemplate.from_gguf(GGUFFile(gemma_path))
    assert t.source == ChatTemplate.builtin("chatml").source
    assert (t.bos_token, t.eos_token) == ("<bos>", "<eos>")
    assert t.render(CONVERSATION[1:2]) == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"


class _FakeGGUF:
    def __init__(self, metadata):
        self.metadata = metadata


def test_from_gguf_tokens_and_bos_stripping():
    tokens = ["<unk>", "<s>", "</s>"]
    meta = {
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.model": "llama",
        "tokenizer.chat_template": "{{ bos_token }}[{{ messages[0].content }}]",
    }
    t = ChatTemplate.from_gguf(_FakeGGUF(meta))
    assert (t.bos_token, t.eos_token) == ("<s>", "</s>")
    # SPM vocabularies add BOS when tokenizing, so llama.cpp strips it from the prompt text
    assert t.render([{"role": "user", "content": "x"}]) == "[x]"
    meta["tokenizer.ggml.add_bos_token"] = False
    assert ChatTemplate.from_gguf(_FakeGGUF(meta)).render([{"role": "user", "content": "x"}]) == "<s>[x]"
    # no template: ChatML; a named variant
    del meta["tokenizer.chat_template"]
    assert ChatTemplate.from_gguf(_FakeGGUF(meta)).source == ChatTemplate.builtin("chatml").source
    meta["tokenizer.chat_template.tool_use"] = "tools!"
    assert ChatTemplate.from_gguf(_FakeGGUF(meta), "tool_use").render([]) == "tools!"


# -- helpers and errors ----------------------------------------------------------------------------------


def test_raise_exception_becomes_chat_template_error():
    t = ChatTemplate(
        "{% if messages[0].role != 'user' %}{{ raise_exception('First message must be from the user') }}"
        "{% endif %}ok",
        polyfills=False,
    )
    assert t.render([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(ChatTemplateError, match="^First message must be from the user$"):
        t.render([{"role": "assistant", "content": "x"}])


def test_template_raising_on_system_gets_it_merged_like_llama_cpp():
    src = (
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    )
    assert ChatTemplate(src).render(CONVERSATION[:2]) == "<user>You are a helpful assistant\nHello"
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        ChatTemplate(src, polyfills=False).render(CONVERSATION[:2])


def test_syntax_error_is_chat_template_error():
    with pytest.raises(ChatTemplateError, match="syntax error at line 2"):
        ChatTemplate("{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    with pytest.raises(ChatTemplateError, match="syntax error"):
        ChatTemplate("{% if x %}never closed")


def test_runtime_error_is_chat_template_error_with_line():
    with pytest.raises(ChatTemplateError, match="line 2: No filter named 'no_such_filter'"):
        ChatTemplate("line one\n{{ messages[0].content | no_such_filter }}")
    t = ChatTemplate("a\nb\n{{ messages[0].content + 1 }}", polyfills=False)
    with pytest.raises(ChatTemplateError, match="render error at line 3: TypeError"):
        t.render([{"role": "user", "content": "x"}])


def test_sandbox_blocks_unsafe_access():
    t = ChatTemplate("{{ messages.__class__.__mro__ }}", polyfills=False)
    assert t.render([]) == ""  # unsafe attributes are undefined in the sandbox
    t = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}", polyfills=False)
    with pytest.raises(ChatTemplateError, match="SecurityError"):
        t.render([])


def test_template_mutates_its_own_lists_never_the_callers():
    # Kimi-K2's template queues tool call ids with list.append/pop (llama.cpp allows it, HF does not)
    t = ChatTemplate(
        "{% set ns = namespace(ids=[]) %}{% set _ = ns.ids.append('a') %}{% set _ = ns.ids.append('b') %}"
        "{{ ns.ids.pop(0) }}{{ ns.ids }}"
        "{% set _ = messages.append('x') %}{% set _ = messages[0].update(role='z') %}"
    )
    messages = [{"role": "user", "content": "hi"}]
    assert t.render(messages) == "a['b']"
    assert messages == [{"role": "user", "content": "hi"}]


def test_tojson_takes_generators():
    # llama.cpp's own deepseek-r1 template: tools | map(attribute='function') | tojson
    t = ChatTemplate("{{ tools | map(attribute='function') | map(attribute='name') | tojson }}")
    assert t.render([], tools=[WEATHER_TOOL, WEATHER_TOOL]) == '["get_weather", "get_weather"]'


def test_tojson_like_hf():
    t = ChatTemplate(
        "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':')) }}|"
        "{{ x | tojson(sort_keys=true) }}|{{ x | tojson(ensure_ascii=true) }}"
    )
    x = {"b": "<a href='x'>&</a>", "a": "été"}
    assert t.render([], x=x) == "|".join(
        [
            json.dumps(x, ensure_ascii=False),
            json.dumps(x, ensure_ascii=False, indent=2),
            json.dumps(x, ensure_ascii=False, separators=(",", ":")),
            json.dumps(x, ensure_ascii=False, sort_keys=True),
            json.dumps(x),
        ]
    )


def test_strftime_now_and_dates():
    t = ChatTemplate("{{ strftime_now('%Y-%m-%d') }}")
    before = datetime.now().strftime("%Y-%m-%d")
    assert t.render([]) in (before, datetime.now().strftime("%Y-%m-%d"))
    assert ChatTemplate("{{ date_string }}").render([], date_string="26 Jul 2024") == "26 Jul 2024"


def test_generation_block_and_loop_controls():
    t = ChatTemplate(
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{% generation %}[{{ m.content }}]{% endgeneration %}{% if loop.index > 2 %}{% break %}"
        "{% endif %}{% endfor %}",
        polyfills=False,
    )
    assert t.render(CONVERSATION) == "[Hello][Hi there]"


def test_context_variables():
    t = ChatTemplate(
        "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools is defined }}|"
        "{{ enable_thinking }}|{{ custom }}",
        "<s>",
        "</s>",
    )
    assert t.render([]) == "<s>|</s>|True|False|True|"
    assert (
        t.render([], add_generation_prompt=False, tools=[WEATHER_TOOL], enable_thinking=False, custom=7)
        == "<s>|</s>|False|True|False|7"
    )


def test_content_parts_joined_for_string_templates():
    parts = [
        {"type": "text", "text": "first"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "second"},
    ]
    out = ChatTemplate.builtin("chatml").render([{"role": "user", "content": parts}])
    assert out == "<|im_start|>user\nfirst\nsecond<|im_end|>\n<|im_start|>assistant\n"


def test_strings_become_parts_for_typed_only_templates():
    src = "{% for m in messages %}{% for p in m.content %}{{ p.text }};{% endfor %}{% endfor %}"
    t = ChatTemplate(src)
    assert t.caps.supports_typed_content and not t.caps.supports_string_content
    assert t.render([{"role": "user", "content": "plain"}]) == "plain;"


def test_arguments_as_the_template_wants_them():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"city": "Zürich"}}}
    messages = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    # a template that concatenates arguments gets JSON text (llama.cpp's compact dump), not a dict
    as_text = ChatTemplate(
        "{% for m in messages %}{% for c in m.tool_calls %}"
        "{{ c.function.arguments + '!' }}{% endfor %}{% endfor %}"
    )
    assert not as_text.caps.supports_object_arguments
    assert as_text.render(messages) == '{"city":"Zürich"}!'
    # a template that looks inside gets the object, also when the client sent a JSON string
    as_object = ChatTemplate(
        "{% for m in messages %}{% for c in m.tool_calls %}"
        "{{ c.function.arguments.city }}{% endfor %}{% endfor %}"
    )
    assert as_object.caps.supports_object_arguments
    call["function"]["arguments"] = '{"city": "Bern"}'
    assert as_object.render(messages) == "Bern"
    call["function"]["arguments"] = "{not json"
    with pytest.raises(ChatTemplateError, match="not valid JSON"):
        as_object.render(messages)


def test_system_merged_into_typed_parts():
    src = (
        "{% for m in messages if m.role != 'system' %}"
        "{{ m.role }}:{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}"
    )
    t = ChatTemplate(src)
    assert not t.caps.supports_string_content and not t.caps.supports_system_role
    assert t.render(CONVERSATION[:2]) == "user:[You are a helpful assistant][Hello]"


def test_developer_role_maps_to_system():
    out = ChatTemplate.builtin("chatml").render(
        [{"role": "developer", "content": "Be brief"}], add_generation_prompt=False
    )
    assert out == "<|im_start|>system\nBe brief<|im_end|>\n"


def test_lenient_concatenation_like_llama_cpp():
    # firefunction-v2 concatenates an undefined `functions`; llama.cpp's engine treats it as ''
    t = ChatTemplate("{{ 'a' + nothing + 'b' + none_value }}|{{ nothing.deeper }}", polyfills=False)
    assert t.render([], none_value=None) == "ab|"


def test_compiled_once():
    t = ChatTemplate.builtin("chatml")
    compiled = t._template
    t.render(CONVERSATION)
    t.render(CONVERSATION[:2])
    assert t._template is compiled
