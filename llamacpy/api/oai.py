"""OpenAI-shaped results for the Python API, as llama-cpp-python returns them, so code written for
`llama_cpp.Llama` runs on `llamacpy.Llama`:

>>> llm = Llama(model_path="model.gguf", n_ctx=2048, verbose=False)
>>> llm("Q: Name the planets. A:", max_tokens=32, stop=["Q:"])["choices"][0]["text"]
>>> llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}])["choices"][0]["message"]
>>> for chunk in llm.create_chat_completion(messages=..., stream=True): chunk["choices"][0]["delta"]

Dicts (and iterators of chunk dicts with `stream=True`) with `id`, `object`, `created`, `model`,
`choices` and `usage`, the same keys as llama-cpp-python and the OpenAI API.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..engine.textgen import Completion

if TYPE_CHECKING:
    from .llama import Llama

# llama-cpp-python's sampling arguments that map one to one onto ours (SamplingParams)
SAMPLING = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
            "frequency_penalty", "mirostat_tau", "mirostat_eta", "seed", "logit_bias")


def _sampling(kw: dict[str, Any]) -> dict[str, Any]:
    out = {k: kw[k] for k in SAMPLING if kw.get(k) is not None}
    if kw.get("mirostat_mode"):  # llama-cpp-python's name for mirostat
        out["mirostat"] = int(kw["mirostat_mode"])
    if "logit_bias" in out:
        out["logit_bias"] = {int(k): float(v) for k, v in out["logit_bias"].items()}
    return out


def _constraint(grammar: str | None, response_format: dict | None) -> dict[str, Any]:
    if response_format is None or response_format.get("type", "text") == "text":
        return {"grammar": grammar} if grammar else {}
    if response_format.get("type") == "json_object":
        return {"json_schema": response_format.get("schema") or {}}
    if response_format.get("type") == "json_schema":
        return {"json_schema": (response_format.get("json_schema") or {}).get("schema") or {}}
    raise ValueError(f"response_format type must be text, json_object or json_schema, not {response_format['type']!r}")


class _Run:
    """One generation: its pieces, counted, with the fields every result shares."""

    def __init__(self, llm: Llama, prefix: str, tokens: list[int], max_tokens: int | None, stop, kw: dict):
        self.id, self.created, self.model = f"{prefix}-{secrets.token_hex(12)}", int(time.time()), str(llm.path)
        self.n_prompt, self.n_gen = len(tokens), 0
        stop = [stop] if isinstance(stop, str) else stop
        self.pieces = llm.stream_tokens(tokens, -1 if max_tokens is None or max_tokens <= 0 else max_tokens, stop,
                                        **kw)

    def __iter__(self) -> Iterator[Completion]:
        for c in self.pieces:
            self.n_gen += c.token is not None
            yield c

    def head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def usage(self) -> dict:
        return {"prompt_tokens": self.n_prompt, "completion_tokens": self.n_gen,
                "total_tokens": self.n_prompt + self.n_gen}


def create_completion(llm: Llama, prompt: str, max_tokens: int | None = 16, stop=None, stream: bool = False,
                      grammar: str | None = None, **kw) -> dict | Iterator[dict]:
    tokens = llm.tokenize(prompt, add_special=True, parse_special=True)
    run = _Run(llm, "cmpl", tokens, max_tokens, stop, {**_sampling(kw), **_constraint(grammar, None)})

    def chunk(text: str, finish: str | None) -> dict:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return {**run.head("text_completion"), "choices": [choice]}

    def chunks() -> Iterator[dict]:  # the text, then a last chunk with the finish reason alone
        for c in run:
            if c.text:
                yield chunk(c.text, None)
            if c.finish_reason:
                yield chunk("", c.finish_reason)

    if stream:
        return chunks()
    text, finish = "", None
    for part in chunks():
        text += part["choices"][0]["text"]
        finish = part["choices"][0]["finish_reason"] or finish
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
    return {**run.head("text_completion"), "choices": [choice], "usage": run.usage()}


def create_chat_completion(llm: Llama, messages: list[dict], max_tokens: int | None = None, stop=None,
                           stream: bool = False, response_format: dict | None = None, grammar: str | None = None,
                           **kw) -> dict | Iterator[dict]:
    kw.setdefault("temperature", 0.2)  # llama-cpp-python's chat default
    prompt = llm.apply_chat_template(messages)
    tokens = llm.tokenizer.encode(prompt, add_special=True, parse_special=True)
    run = _Run(llm, "chatcmpl", tokens, max_tokens, stop, {**_sampling(kw), **_constraint(grammar, response_format)})

    def chunk(delta: dict, finish: str | None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**run.head("chat.completion.chunk"), "choices": [choice]}

    def chunks() -> Iterator[dict]:  # the role, the text, then an empty delta with the finish reason
        yield chunk({"role": "assistant"}, None)
        for c in run:
            if c.text:
                yield chunk({"content": c.text}, None)
            if c.finish_reason:
                yield chunk({}, c.finish_reason)

    if stream:
        return chunks()
    text, finish = "", None
    for part in chunks():
        choice = part["choices"][0]
        text += choice["delta"].get("content", "")
        finish = choice["finish_reason"] or finish
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}
    return {**run.head("chat.completion"), "choices": [choice], "usage": run.usage()}


def create_embedding(llm: Llama, input: str | list[str], model: str | None = None) -> dict:
    """llama-cpp-python's create_embedding: pooled, L2-normalized vectors in the OpenAI shape."""
    texts = [input] if isinstance(input, str) else list(input)
    vectors, n_tokens = llm.embed(texts, return_count=True)
    data = [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model or str(llm.path),
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
