"""llama-cpp-python's calls on `llamacpy.Llama` (oai.py): the same arguments, the same result dicts."""

from __future__ import annotations

import json

import pytest

from llamacpy import Llama

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm(smollm2_path) -> Llama:
    return Llama(model_path=str(smollm2_path), n_ctx=1024, verbose=False, n_gpu_layers=-1)


def test_quiet_constructor(smollm2_path, capsys):
    Llama(model_path=str(smollm2_path), n_ctx=256, verbose=False)
    assert capsys.readouterr().err == ""


def test_call_is_create_completion(llm):
    r = llm("The capital of France is", max_tokens=8, temperature=0)
    assert r["object"] == "text_completion" and r["id"].startswith("cmpl-")
    (choice,) = r["choices"]
    assert choice["text"] == llm.complete("The capital of France is", max_tokens=8, temperature=0)
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    n_prompt = len(llm.tokenize("The capital of France is", parse_special=True))
    assert r["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 8, "total_tokens": n_prompt + 8}
    stopped = llm("The capital of France is", max_tokens=16, temperature=0, stop=".")
    assert stopped["choices"][0]["finish_reason"] == "stop" and "." not in stopped["choices"][0]["text"]


def test_chat_completion_whole_and_streamed(llm):
    messages = [{"role": "user", "content": "Name three colors."}]
    r = llm.create_chat_completion(messages=messages, max_tokens=24, temperature=0)
    assert r["object"] == "chat.completion"
    message = r["choices"][0]["message"]
    assert message == {"role": "assistant", "content": llm.chat(messages, max_tokens=24, temperature=0)}
    chunks = list(llm.create_chat_completion(messages=messages, max_tokens=24, temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] is not None
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == message["content"]


def test_response_format_schema(llm):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    r = llm.create_chat_completion(messages=[{"role": "user", "content": "A person as JSON."}], max_tokens=60,
                                   temperature=0, response_format={"type": "json_schema",
                                                                   "json_schema": {"schema": schema}})
    assert r["choices"][0]["finish_reason"] == "stop"
    person = json.loads(r["choices"][0]["message"]["content"])
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)
    with pytest.raises(ValueError, match="response_format"):
        llm.create_chat_completion(messages=[{"role": "user", "content": "x"}], response_format={"type": "xml"})
