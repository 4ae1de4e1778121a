"""Response bodies: OpenAI chat / text completions (whole and chunked) and llama-server's native format.

Each `*_events` function turns a generation's pieces into the JSON objects of a stream (the SSE layer
frames them); each `*_response` builds the non-streamed body.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import __version__
from ..engine import Stats
from .generation import Generation, Piece, Result
from .params import GenArgs
from .reasoning import ReasoningStream, Thinking, split
from .tool_calls import ToolCall, ToolCallStream, ToolSetup, parse_tool_calls

FINGERPRINT = f"b0-llamacpy{__version__}"


def timings(s: Stats) -> dict:
    """llama-server's `timings` object."""
    prompt_n = s.n_prompt - s.n_cached
    steps = max(0, s.n_decoded - 1)
    out = {
        "cache_n": s.n_cached,
        "prompt_n": prompt_n,
        "prompt_ms": s.t_prompt_ms,
        "prompt_per_token_ms": s.t_prompt_ms / prompt_n if prompt_n else 0.0,
        "prompt_per_second": 1e3 * prompt_n / s.t_prompt_ms if s.t_prompt_ms > 0 else 0.0,
        "predicted_n": s.n_decoded,
        "predicted_ms": s.t_gen_ms,
        # over the decode steps: the first token comes free with the prompt's last batch (as llama-server)
        "predicted_per_token_ms": s.t_gen_ms / steps if steps else 0.0,
        "predicted_per_second": 1e3 / s.t_gen_ms * steps if s.t_gen_ms > 0 else 0.0,
    }
    if s.n_drafted:  # speculative decoding, as llama-server reports it
        out.update(draft_n=s.n_drafted, draft_n_accepted=s.n_draft_accepted)
    return out


def usage(s: Stats) -> dict:
    return {"completion_tokens": s.n_decoded, "prompt_tokens": s.n_prompt,
            "total_tokens": s.n_prompt + s.n_decoded, "prompt_tokens_details": {"cached_tokens": s.n_cached}}


@dataclass
class OaiMeta:
    """The fields every OpenAI response object of one request shares."""

    model: str
    prefix: str  # "chatcmpl" | "cmpl"
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = self.id or f"{self.prefix}-{secrets.token_hex(16)}"

    def head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": FINGERPRINT}


def _logprobs(probs: list[dict]) -> dict:
    return {"content": probs}


# -- /v1/chat/completions ---------------------------------------------------------------------------------

def chat_response(meta: OaiMeta, r: Result, args: GenArgs, tools: ToolSetup | None = None, index: int = 0) -> dict:
    """`tools`: parse the reply for tool calls (given when the request has tools and tool_choice is not none)."""
    reasoning, text = split(r.content, args.think)
    message = {"role": "assistant", "content": text}
    finish = r.finish
    if tools is not None:
        content, calls = parse_tool_calls(text)
        if calls:
            calls = calls if tools.parallel else calls[:1]
            message = {"role": "assistant", "content": content, "tool_calls": [c.json() for c in calls]}
            finish = "tool_calls" if finish == "stop" else finish
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    choice = {"index": index, "finish_reason": finish, "message": message}
    if args.logprobs:
        choice["logprobs"] = _logprobs(r.probs)
    return {**meta.head("chat.completion"), "choices": [choice], "usage": usage(r.stats),
            "timings": timings(r.stats)}


async def chat_events(meta: OaiMeta, gen: Generation, tools: ToolSetup | None = None,
                      index: int = 0) -> AsyncIterator[dict]:
    """Role delta with the first token, reasoning_content / content (or tool call) deltas, a finish chunk, the
    usage chunk if asked. With `tools` the text goes through the tool-call parser (logprobs are refused then)."""
    args, first = gen.args, True
    last: Piece | None = None
    parser = ToolCallStream() if tools is not None else None
    think = ReasoningStream(args.think) if args.think is not None else None
    n_calls = 0
    async for piece in gen.pieces():
        if piece.progress is not None:
            yield _progress(_chat_chunk(meta, {"role": "assistant", "content": None}, index=index), piece, args)
            continue
        if first:
            first = False
            yield _chat_chunk(meta, {"role": "assistant", "content": None}, index=index)
        deltas = []
        for kind, value in _piece_events(think, parser, piece):
            if kind == "reasoning":
                deltas.append({"reasoning_content": value})
            elif kind == "content":
                deltas.append({"content": value})
            elif tools.parallel or n_calls == 0:
                deltas += [{"tool_calls": [d]} for d in _call_deltas(n_calls, value)]
                n_calls += 1
        if not deltas and piece.probs and args.logprobs:
            deltas = [{"content": ""}]
        for i, delta in enumerate(deltas):
            chunk = _chat_chunk(meta, delta, index=index)
            if args.logprobs and i == 0:
                chunk["choices"][0]["logprobs"] = _logprobs(piece.probs)
            if args.timings_per_token and i == len(deltas) - 1:
                chunk["timings"] = timings(piece.stats)
            yield chunk
        last = piece
    finish = "tool_calls" if n_calls and last.finish == "stop" else last.finish
    end = _chat_chunk(meta, {}, finish, index)
    if args.include_usage:
        yield end
        yield {**meta.head("chat.completion.chunk"), "choices": [], "usage": usage(last.stats),
               "timings": timings(last.stats)}
    else:
        yield {**end, "timings": timings(last.stats)}


def _progress(chunk: dict, piece: Piece, args: GenArgs) -> dict:
    """A return_progress frame: `chunk` with prompt_progress (and the timings so far with timings_per_token)."""
    chunk["prompt_progress"] = piece.progress
    if args.timings_per_token:
        chunk["timings"] = timings(piece.stats)
    return chunk


def _piece_events(think: ReasoningStream | None, parser: ToolCallStream | None,
                  piece: Piece) -> list[tuple[str, Any]]:
    """A piece's text as ("reasoning", str), ("content", str) and ("call", ToolCall) events in order: the
    reasoning split first (all content without one), then the tool-call parser (if any) over the content."""
    if think is None:
        parts = [("content", piece.text)] if piece.text else []
    else:
        parts = think.feed(piece.text) + (think.finish() if piece.finish else [])
    if parser is None:
        return parts
    events: list[tuple[str, Any]] = []
    for kind, text in parts:
        events += parser.feed(text) if kind == "content" else [(kind, text)]
    return events + (parser.finish() if piece.finish else [])


def _call_deltas(index: int, call) -> list[dict]:
    """OpenAI's stream shape of one call: id, type and name first, then the arguments."""
    return [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}},
            {"index": index, "function": {"arguments": call.arguments}}]


def _chat_chunk(meta: OaiMeta, delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {**meta.head("chat.completion.chunk"),
            "choices": [{"index": index, "finish_reason": finish, "delta": delta}]}


# -- replies as text and tool calls (the Anthropic and Responses APIs render these) ------------------------------

def split_reply(r: Result, tools: ToolSetup | None, think: Thinking | None) -> tuple[str | None, str, list[ToolCall]]:
    """A whole reply's reasoning (None without), text and tool calls (the calls parsed when `tools` says so;
    only the first without parallel calls)."""
    reasoning, text = split(r.content, think)
    if tools is None:
        return reasoning, text, []
    content, calls = parse_tool_calls(text)
    return reasoning, content or "", calls if tools.parallel else calls[:1]


async def reply_parts(gen: Generation, tools: ToolSetup | None) -> AsyncIterator[tuple[str, Any]]:
    """A generation as ("start", first Piece), then ("thinking", str), ("text", str) and ("call", ToolCall) in
    order, then ("end", last Piece): what chat_events streams, for the APIs that stream blocks instead of deltas.
    ("progress", Piece) may come first, with return_progress; ("piece", Piece) follows each piece's parts."""
    parser = ToolCallStream() if tools is not None else None
    think = ReasoningStream(gen.args.think) if gen.args.think is not None else None
    n_calls, first = 0, True
    async for piece in gen.pieces():
        if piece.progress is not None:
            yield "progress", piece
            continue
        if first:
            first = False
            yield "start", piece
        for kind, value in _piece_events(think, parser, piece):
            if kind != "call":
                yield ("thinking" if kind == "reasoning" else "text"), value
            elif tools.parallel or n_calls == 0:
                yield "call", value
                n_calls += 1
        yield "piece", piece
        if piece.finish:
            yield "end", piece


# -- /v1/completions --------------------------------------------------------------------------------------

def text_response(meta: OaiMeta, r: Result, args: GenArgs, index: int = 0) -> dict:
    choice = {"text": r.content, "index": index, "logprobs": _logprobs(r.probs) if args.logprobs else None,
              "finish_reason": r.finish}
    return {**meta.head("text_completion"), "choices": [choice], "usage": usage(r.stats),
            "timings": timings(r.stats)}


async def text_events(meta: OaiMeta, gen: Generation, index: int = 0) -> AsyncIterator[dict]:
    args = gen.args
    last: Piece | None = None
    async for piece in gen.pieces():
        if piece.progress is not None or piece.text or piece.probs or piece.finish:
            choice = {"text": piece.text, "index": index,
                      "logprobs": _logprobs(piece.probs) if args.logprobs else None, "finish_reason": piece.finish}
            chunk = {**meta.head("text_completion"), "choices": [choice]}
            if piece.progress is not None:
                yield _progress(chunk, piece, args)
                continue
            if (piece.finish and not args.include_usage) or args.timings_per_token:
                chunk["timings"] = timings(piece.stats)
            yield chunk
        last = piece
    if args.include_usage:
        yield {**meta.head("text_completion"), "choices": [], "usage": usage(last.stats),
               "timings": timings(last.stats)}


# -- /completion (native) ---------------------------------------------------------------------------------

def native_response(model: str, prompt: str, r: Result, args: GenArgs, index: int = 0) -> dict:
    out = {"index": index, "content": r.content, "tokens": r.tokens if args.return_tokens else [],
           "id_slot": r.stats.id_slot, "stop": True, "model": model, "tokens_predicted": r.stats.n_decoded,
           "tokens_evaluated": r.stats.n_prompt, "generation_settings": args.settings_json(), "prompt": prompt,
           "has_new_line": "\n" in r.content, "truncated": r.truncated, "stop_type": r.stop_type,
           "stopping_word": r.stopping_word, "tokens_cached": r.stats.n_prompt + r.stats.n_decoded,
           "timings": timings(r.stats)}
    if args.n_probs > 0:
        out["completion_probabilities"] = r.probs
    return out


async def native_events(model: str, prompt: str, gen: Generation, index: int = 0) -> AsyncIterator[dict]:
    """A frame per piece of text ("stop": false), then the final frame with the statistics; no [DONE]."""
    args = gen.args
    async for piece in gen.pieces():
        if piece.progress is not None:
            partial = _native_partial(piece, args, index)
            partial["tokens_evaluated"] = piece.progress["total"]  # the progress stats count what is processed
            yield _progress(partial, piece, args)
        elif piece.finish:
            last = Result("", piece.tokens, piece.probs, piece.stats, piece.finish, piece.stop_type,
                          piece.stopping_word, piece.truncated)
            if piece.text:
                yield _native_partial(piece, args, index)
                last.tokens, last.probs = [], []
            yield native_response(model, prompt, last, args, index)
        else:
            partial = _native_partial(piece, args, index)
            if args.timings_per_token:
                partial["timings"] = timings(piece.stats)
            yield partial


def _native_partial(piece: Piece, args: GenArgs, index: int = 0) -> dict:
    out = {"index": index, "content": piece.text, "tokens": piece.tokens if args.return_tokens else [],
           "stop": False, "id_slot": piece.stats.id_slot, "tokens_predicted": piece.stats.n_decoded,
           "tokens_evaluated": piece.stats.n_prompt}
    if args.n_probs > 0:
        out["completion_probabilities"] = piece.probs
    return out


# -- several choices in one response (several prompts, `n` > 1) -----------------------------------------------

def sum_usage(usages: list[dict]) -> dict:
    out = {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0, "prompt_tokens_details": {"cached_tokens": 0}}
    for u in usages:
        for key in ("completion_tokens", "prompt_tokens", "total_tokens"):
            out[key] += u[key]
        out["prompt_tokens_details"]["cached_tokens"] += u["prompt_tokens_details"]["cached_tokens"]
    return out


def merge_choices(responses: list[dict]) -> dict:
    """One OpenAI response of several: every choice (each already carries its index), usage summed; the
    other fields (id, timings) are the first response's."""
    out = dict(responses[0])
    out["choices"] = [c for r in responses for c in r["choices"]]
    out["usage"] = sum_usage([r["usage"] for r in responses])
    return out


async def interleave(streams: list[AsyncIterator[dict]], oai: bool) -> AsyncIterator[dict]:
    """The events of several generations as they come (each chunk names its choice's index). OpenAI
    streams: the usage chunks (`choices: []`) are held back and sent once, summed, at the end."""
    pending = {asyncio.ensure_future(anext(s)): s for s in streams}
    usages: list[dict] = []
    last_usage: dict | None = None
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: streams.index(pending[f])):
                stream = pending.pop(fut)
                try:
                    obj = fut.result()
                except StopAsyncIteration:
                    continue
                pending[asyncio.ensure_future(anext(stream))] = stream
                if oai and obj.get("choices") == [] and "usage" in obj:
                    usages.append(obj["usage"])
                    last_usage = last_usage or obj
                    continue
                yield obj
        if last_usage is not None:
            yield {**last_usage, "usage": sum_usage(usages)}
    finally:
        with anyio.CancelScope(shield=True):  # the client may be gone: clean up regardless
            for fut in pending:
                fut.cancel()
            if pending:
                await asyncio.wait(pending)
            for fut in pending:
                if not fut.cancelled():
                    fut.exception()  # retrieved: the stream is being closed anyway
            for stream in streams:
                await stream.aclose()
