"""A server started with a llama-server command line and LLAMA_ARG_* variables does what llama-server does:
--no-jinja refuses tools, --tags show in /v1/models, --chat-template-kwargs reach the template, -ctk/-ctv give the
KV cache llama-server's would be (its reply recorded with them), GPU flags are logged as having no effect."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from llamacpy.kernels.simd import HAS_AVX512

CACHE_TYPES = Path(__file__).resolve().parents[1] / "data" / (
    "llama_server_cache_types" if HAS_AVX512 else "llama_server_cache_types_avx2") / "SmolLM2-135M-Instruct.Q4_1.json"

TEMPLATE = ("{{ greeting }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    mp = pytest.MonkeyPatch()
    mp.setenv("LLAMA_ARG_N_GPU_LAYERS", "99")
    mp.setenv("LLAMA_ARG_TAGS", "from-env")  # the command line's --tags wins
    mp.setenv("LLAMA_ARG_CACHE_TYPE_V", "q4_0")
    try:
        return start_server(smollm2_path, "--no-jinja", "--tags", "chat,small", "-fa", "on", "-c", "512",
                            "-np", "1", "-ctk", "q4_0", "--cors-origins", "localhost", "--chat-template", TEMPLATE, "--chat_template_kwargs",
                            '{"greeting": "HELLO"}')
    finally:
        mp.undo()


@pytest.mark.skipif(not CACHE_TYPES.exists(), reason="no cache-type recording for this instruction set")
def test_cache_types_from_the_flag_and_the_environment(server):
    case = json.loads(CACHE_TYPES.read_text())["types"]["q4_0/q4_0"][0]
    r = httpx.post(f"{server.url}/completion", json={
        "prompt": case["prompt"], "n_predict": len(case["tokens"]), "temperature": 0, "cache_prompt": False,
        "return_tokens": True}, timeout=120)
    assert r.status_code == 200 and r.json()["tokens"] == case["tokens"]
    assert "KV cache Q4_0/Q4_0" in server.log_text()


def test_no_jinja_refuses_tools_as_llama_server(server):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    r = httpx.post(f"{server.url}/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "hi"}], "tools": [tool], "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["message"] == "tools param requires --jinja flag"
    r = httpx.post(f"{server.url}/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    assert r.status_code == 200


def test_tags_in_models(server):
    assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["tags"] == ["chat", "small"]


def test_template_kwargs_from_the_command_line_and_the_request(server):
    msgs = [{"role": "user", "content": "hi"}]
    r = httpx.post(f"{server.url}/apply-template", json={"messages": msgs})
    assert r.json()["prompt"] == "HELLO<user>hi<assistant>"
    r = httpx.post(f"{server.url}/apply-template",
                   json={"messages": msgs, "chat_template_kwargs": {"greeting": "BYE"}})
    assert r.json()["prompt"] == "BYE<user>hi<assistant>"


def test_gpu_flags_are_logged(server):
    log = server.log_text()
    assert "LLAMA_ARG_N_GPU_LAYERS: no effect, llamacpy runs on the CPU" in log
    assert "-fa: no effect" in log


@pytest.mark.parametrize("origin, allowed", [("http://localhost:3000", True), ("http://[::1]", True),
                                             ("http://127.0.0.1", True), ("http://localhost.evil.com", False),
                                             ("http://evil.com", False)])
def test_cors_origins_localhost(server, origin, allowed):
    r = httpx.options(f"{server.url}/completions", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") == (origin if allowed else None)
