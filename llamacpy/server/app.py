"""The HTTP application: one route table, handlers, and the gate in front of them (CORS, readiness, keys).

Handlers do the text work (JSON, chat templates, tokenizing); the engine thread sees only token ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from ..tokenizer.chat_template import ChatTemplateError
from ..ui import WebUI
from . import anthropic, responses
from .context import ServerContext
from .cors_proxy import cors_proxy
from .embeddings import check_generating, embeddings_native, embeddings_oai, rerank
from .errors import EXCEPTION_HANDLERS, ApiError, bad_request, exceeds_context, media_unsupported
from .formats import (
    OaiMeta,
    chat_events,
    chat_response,
    interleave,
    merge_choices,
    native_events,
    native_response,
    text_events,
    text_response,
)
from .gate import Gate
from .gcp import predict_endpoint
from .generation import Generation, Piece
from .infill import FimTokens, infill_input, infill_tokens
from .info_routes import health, lora_adapters, metrics, models, props, set_lora_adapters, slots
from .jsonio import JsonResponse
from .params import (
    Body,
    ConstraintSpec,
    GenArgs,
    check_choice_count,
    check_tokens,
    constraint_spec,
    n_choices,
    parse_json,
    prompt_list,
    prompt_pieces,
    read_body,
    request_args,
)
from .reasoning import Thinking
from .sleep import WakeOnRequest
from .slot_actions import slot_action
from .sse import EventStream, GuardedResponse, sse_bytes
from .stream_routes import resumable, stream_delete, stream_get, streams_lookup
from .tool_calls import ToolSetup, tool_grammar, tool_setup
from .toolbox import tools_get, tools_post

log = logging.getLogger("llamacpy.server")

PUBLIC_PATHS = {"/", "/health", "/v1/health", "/models", "/v1/models"}
MEDIA = {"image_url": "image", "input_audio": "audio", "input_video": "video"}  # content part type -> media
BIG_TEXT = 8192  # characters: tokenize longer texts off the event loop
MAX_N_PROBS = 100  # alternatives per token: more would make every response frame huge


def _ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


async def _body(request: Request) -> Body:
    return Body(parse_json(await read_body(request, _ctx(request).settings.max_body_bytes)))


# -- prompts -----------------------------------------------------------------------------------------------

async def _encode(ctx: ServerContext, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
    if len(text) > BIG_TEXT:
        return await asyncio.to_thread(ctx.tokenizer.encode, text, add_special, parse_special)
    return ctx.tokenizer.encode(text, add_special, parse_special)


def _check_length_bound(ctx: ServerContext, text: str) -> None:
    """Refuse texts that cannot fit before spending time tokenizing them."""
    at_least = len(text.encode("utf-8", "surrogatepass")) // ctx.max_piece_bytes
    if at_least >= ctx.n_ctx_slot:
        raise exceeds_context(at_least, ctx.n_ctx_slot)


async def _prompt_tokens(ctx: ServerContext, pieces: list[str | int]) -> list[int]:
    """llama-server's mixed prompt: strings tokenized (special tokens parsed; BOS only before a leading
    string, per the model), ids taken as they are."""
    out: list[int] = []
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            _check_length_bound(ctx, piece)
            out += await _encode(ctx, piece, add_special=i == 0)
        else:
            out.append(piece)
    return check_tokens(out, ctx.tokenizer.n_vocab)


def _check_fits(ctx: ServerContext, tokens: list[int]) -> None:
    if not tokens:
        raise bad_request("the prompt is empty")
    if len(tokens) >= ctx.n_ctx_slot:
        raise exceeds_context(len(tokens), ctx.n_ctx_slot)


def _message_text(content, role: str) -> str | list:
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"the content of a '{role}' message must be a string, null or an array of parts")
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in MEDIA:
            raise media_unsupported(MEDIA[kind])
        if kind != "text" or not isinstance(part.get("text"), str):
            raise bad_request("content parts must be objects {\"type\": \"text\", \"text\": string}")
    return content


async def _chat_prompt(ctx: ServerContext, body: Body) -> str:
    """The templated prompt of a chat request. A trailing assistant message is continued (prefill)."""
    messages = body.data.get("messages")
    if messages is None:
        raise bad_request("'messages' is required")
    if not isinstance(messages, list):
        raise bad_request("Expected 'messages' to be an array")  # an empty one is rendered, as llama-server
    clean = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request("each message must be an object with a string 'role'")
        content = _message_text(m.get("content"), m["role"])
        if m["role"] != "assistant" and content is None:
            raise bad_request(f"a '{m['role']}' message must have 'content'")
        if m["role"] == "assistant" and content is None and not m.get("tool_calls"):
            raise bad_request("an assistant message must have 'content' or 'tool_calls'")
        clean.append({**m, "content": content})
    tools = body.data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_request("'tools' must be an array")
    if not ctx.settings.jinja and (tools or body.data.get("tool_choice") is not None):
        raise bad_request(f"{'tools' if tools else 'tool_choice'} param requires --jinja flag")
    kwargs = {**ctx.template_kwargs, **body.object("chat_template_kwargs")}
    add_generation_prompt = body.bool("add_generation_prompt", True)
    # a trailing assistant message is continued (prefill), as llama-server; `continue_final_message` (vLLM's
    # name for it) asks for that explicitly, and then must come with add_generation_prompt false
    prefill, cont = "", _continuation(body.data.get("continue_final_message"))
    if cont and add_generation_prompt:
        raise bad_request("Cannot set both add_generation_prompt and continue_final_message to true.")
    if clean and clean[-1]["role"] == "assistant":  # llama-server continues it whatever add_generation_prompt says
        if len(clean) > 1 and clean[-2]["role"] == "assistant":
            raise bad_request("cannot have 2 or more assistant messages at the end of the list")
        if clean[-1].get("tool_calls"):
            raise bad_request("Cannot continue an assistant message that contains tool calls.")
        last = clean.pop()["content"] or ""
        prefill = last if isinstance(last, str) else "".join(p["text"] for p in last)
        add_generation_prompt = True  # the assistant turn is opened, then continued
    render = functools.partial(ctx.template.render, clean, add_generation_prompt=add_generation_prompt,
                               tools=tools or None, **kwargs)
    try:  # a long conversation is rendered off the event loop
        text = await asyncio.to_thread(render) if len(clean) > 32 else render()
    except ChatTemplateError as e:
        raise bad_request(str(e)) from None
    return text + prefill


def _continuation(value: Any) -> bool:
    """`continue_final_message`: true/false, or llama.cpp's names ("auto" continues, "none" does not)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("none", "false", "auto", "true"):
        return value.lower() in ("auto", "true")
    raise bad_request("'continue_final_message' must be a boolean")


async def _constrain(ctx: ServerContext, body: Body, args: GenArgs, chat: bool,
                     tools: ToolSetup | None = None) -> None:
    """Attach the request's grammar / JSON schema (compiled off the event loop); invalid ones are a 400.
    A forced tool call (`tool_choice` "required" or a named function) is a grammar of its own."""
    spec = constraint_spec(body, chat)
    if tools is not None and tools.forced:
        if spec is not None:
            raise bad_request("a forced 'tool_choice' cannot be combined with 'response_format' or 'json_schema'")
        spec = ConstraintSpec(lark=tool_grammar(tools))
    if spec is None:
        return
    try:
        args.grammar = await asyncio.to_thread(ctx.compile_grammar, spec)
    except ValueError as e:
        what = "grammar" if spec.gbnf is not None else "tool parameters schema" if spec.lark else "JSON schema"
        raise bad_request(f"invalid {what}: {e}") from None


# -- generation routes -------------------------------------------------------------------------------------

def _max_choices(ctx: ServerContext) -> int:
    """The most generations one request may ask for (prompts x `n`)."""
    return max(16, 4 * ctx.settings.n_slots)


def _respond(ctx: ServerContext, runs: list[GenArgs], events: Callable[[Generation, int], AsyncIterator[dict]],
             oai: bool, whole: Callable[[list[Generation]], Awaitable[object]], named: bool = False) -> object:
    """Submit the generations (one per prompt and choice; they run side by side on the slots); stream them
    (SSE, chunks interleaved, each naming its index; `named`: `event:` frames) or answer once all are
    complete, cancelling every one if the client leaves first."""
    gens: list[Generation] = []

    def cancel() -> None:
        for gen in gens:
            gen.cancel()

    try:
        for args in runs:
            gens.append(Generation(ctx.engine, ctx.tokenizer, args, on_end=_log_end))
    except BaseException:
        cancel()
        raise
    if runs[0].stream:
        if len(gens) == 1:
            source = events(gens[0], 0)
        else:
            source = _cancelling(interleave([events(g, i) for i, g in enumerate(gens)], oai), cancel)
        return EventStream(sse_bytes(source, oai, ctx.settings.sse_ping_interval, named), cancel)

    async def produce() -> Response:
        try:
            return JsonResponse(await whole(gens))
        finally:
            cancel()  # one failed: the others are not wanted any more (no-op for those that ended)

    return GuardedResponse(produce, cancel)


async def _cancelling(events: AsyncIterator[dict], cancel: Callable[[], None]) -> AsyncIterator[dict]:
    try:
        async for obj in events:
            yield obj
    finally:
        cancel()
        await events.aclose()


async def _all(gens: list[Generation]) -> list:
    return await asyncio.gather(*(gen.result() for gen in gens))


def _runs(args: GenArgs, prompts: list[list[int]], n: int) -> list[GenArgs]:
    """One generation's arguments per prompt and choice, in index order (prompt i, choice j: i * n + j).
    Every choice gets the request's seed, as llama-server does (a fixed seed gives n equal samples)."""
    return [dataclasses.replace(args, prompt=tokens) for tokens in prompts for _ in range(n)]


def _log_end(gen: Generation, last: Piece) -> None:
    s = last.stats
    tps = 1e3 * s.n_decoded / s.t_gen_ms if s.t_gen_ms > 0 else 0.0
    log.info("slot %d | task %d | prompt %d tokens (%d cached) in %.0f ms | %d tokens in %.0f ms (%.1f t/s) | "
             "stop: %s", s.id_slot, gen.id, s.n_prompt, s.n_cached, s.t_prompt_ms, s.n_decoded, s.t_gen_ms, tps,
             last.stop_type)


async def _chat_tokens(ctx: ServerContext, body: Body) -> list[int]:
    """The templated prompt of a chat request, as tokens."""
    return (await _chat_text_tokens(ctx, body))[1]


async def _chat_text_tokens(ctx: ServerContext, body: Body) -> tuple[str, list[int]]:
    text = await _chat_prompt(ctx, body)
    _check_length_bound(ctx, text)
    return text, await _encode(ctx, text, add_special=True)


def _thinking(ctx: ServerContext, body: Body, prompt: str) -> Thinking | None:
    """--reasoning-format, or the request's reasoning_format, for a reply to `prompt`."""
    fmt = body.str("reasoning_format") or ctx.settings.reasoning_format
    try:
        return Thinking.of(fmt, prompt)
    except ValueError as e:
        raise bad_request(f"'reasoning_format': {e}") from None


async def _chat_setup(ctx: ServerContext, body: Body) -> tuple[GenArgs, ToolSetup | None]:
    """A chat request's generation (one choice) and its tools: what every chat-speaking route shares."""
    tools = tool_setup(body.data, ctx.template.source)
    if tools is not None and body.has("grammar"):
        raise bad_request("cannot use a custom grammar together with tools")
    text, tokens = await _chat_text_tokens(ctx, body)
    _check_fits(ctx, tokens)
    args = request_args(ctx, body, tokens)
    args.think = _thinking(ctx, body, text)
    await _constrain(ctx, body, args, chat=True, tools=tools)
    return args, tools


async def chat_completions(request: Request):
    ctx = _ctx(request)
    check_generating(ctx)
    body = await _body(request)
    n = n_choices(body)
    check_choice_count(1, n, _max_choices(ctx))
    args, tools = await _chat_setup(ctx, body)
    tokens = args.prompt
    if body.bool("logprobs"):
        if tools is not None and args.stream:
            raise bad_request("logprobs is not supported with tools and streaming")
        args.logprobs, args.n_probs = True, body.int("top_logprobs", 20, minimum=0, maximum=20)
    elif body.has("top_logprobs"):
        raise bad_request("top_logprobs requires logprobs to be set to true")
    meta = OaiMeta(ctx.model_name, "chatcmpl")
    parse = tools if tools is not None and tools.parse else None

    async def whole(gens: list[Generation]) -> dict:
        results = await _all(gens)
        out = merge_choices([chat_response(meta, r, args, parse, i) for i, r in enumerate(results)])
        if body.bool("verbose"):  # llama-server adds the native result, with the prompt as evaluated
            out["__verbose"] = native_response(ctx.model_name, ctx.tokenizer.decode(tokens), results[0], args)
        return out

    return _respond(ctx, _runs(args, [tokens], n), lambda gen, i: chat_events(meta, gen, parse, i), True, whole)


async def _prompts(ctx: ServerContext, body: Body) -> tuple[list[list[str | int]], list[list[int]], int]:
    """The request's prompts (as given, and as tokens) and its completions per prompt, bounded."""
    given = prompt_list(body.data.get("prompt"))
    n = n_choices(body)
    check_choice_count(len(given), n, _max_choices(ctx))
    prompts = []
    for pieces in given:
        tokens = await _prompt_tokens(ctx, pieces)
        _check_fits(ctx, tokens)
        prompts.append(tokens)
    return given, prompts, n


async def completions_oai(request: Request):
    ctx = _ctx(request)
    check_generating(ctx)
    body = await _body(request)
    if body.bool("echo") or body.int("best_of", 1) != 1 or body.str("suffix"):
        raise bad_request("'echo', 'best_of' and 'suffix' are not supported")
    _, prompts, n = await _prompts(ctx, body)
    args = request_args(ctx, body, prompts[0])
    await _constrain(ctx, body, args, chat=False)
    if body.has("logprobs"):
        args.logprobs, args.n_probs = True, body.int("logprobs", 0, minimum=0, maximum=20)
    meta = OaiMeta(ctx.model_name, "cmpl")

    async def whole(gens: list[Generation]) -> dict:
        results = await _all(gens)
        return merge_choices([text_response(meta, r, args, i) for i, r in enumerate(results)])

    return _respond(ctx, _runs(args, prompts, n), lambda gen, i: text_events(meta, gen, i), True, whole)


async def completion_native(request: Request):
    """llama-server's /completion: one result object, or an array of them for several prompts or `n` > 1."""
    ctx = _ctx(request)
    check_generating(ctx)
    body = await _body(request)
    given, prompts, n = await _prompts(ctx, body)
    args = request_args(ctx, body, prompts[0])
    await _constrain(ctx, body, args, chat=False)
    args.n_probs = body.int("n_probs", 0, minimum=0, maximum=MAX_N_PROBS)
    args.logprobs = args.n_probs > 0
    texts = [_prompt_text(ctx, pieces) for pieces in given for _ in range(n)]
    return _respond_native(ctx, args, _runs(args, prompts, n), texts)


async def infill(request: Request):
    """llama-server's /infill: a fill-in-the-middle prompt from the model's FIM tokens (infill.py), answered
    as /completion answers."""
    ctx = _ctx(request)
    check_generating(ctx)
    fim = FimTokens.of(ctx.tokenizer.vocab.ids)
    fim.check()
    body = await _body(request)
    inp = infill_input(body.data)
    n = n_choices(body)
    check_choice_count(1, n, _max_choices(ctx))
    _check_length_bound(ctx, inp.prompt)
    # the prefix keeps its end and the suffix its start, up to a batch: longer texts are trimmed (with room
    # to spare) before tokenizing; the extra context must fit the slot
    keep = 2 * ctx.settings.batch_size * ctx.max_piece_bytes
    inp = dataclasses.replace(inp, prefix=inp.prefix[-keep:], suffix=inp.suffix[:keep])
    _check_length_bound(ctx, "".join(t for _, t in inp.extra))
    args = request_args(ctx, body, [])
    tok = ctx.tokenizer
    bos = tok.bos_id if tok.add_bos else None

    def build() -> list[int]:
        return infill_tokens(fim, inp, lambda text, special: tok.encode(text, False, special), bos,
                             ctx.settings.batch_size, ctx.n_ctx_slot, args.n_predict)

    size = len(inp.prefix) + len(inp.suffix) + len(inp.prompt) + sum(len(t) for _, t in inp.extra)
    tokens = await asyncio.to_thread(build) if size > BIG_TEXT else build()
    _check_fits(ctx, tokens)
    args.prompt = tokens
    await _constrain(ctx, body, args, chat=False)
    args.n_probs = body.int("n_probs", 0, minimum=0, maximum=MAX_N_PROBS)
    args.logprobs = args.n_probs > 0
    text = b"".join(tok.token_to_piece(t, special=True) for t in tokens).decode("utf-8", "replace")
    return _respond_native(ctx, args, _runs(args, [tokens], n), [text] * n)


def _prompt_text(ctx: ServerContext, pieces: list[str | int]) -> str:
    return "".join(p if isinstance(p, str) else ctx.tokenizer.token_to_piece(p).decode("utf-8", "replace")
                   for p in pieces)


def _respond_native(ctx: ServerContext, args: GenArgs, runs: list[GenArgs], texts: list[str]) -> object:
    async def whole(gens: list[Generation]) -> dict | list:
        results = await _all(gens)
        out = [native_response(ctx.model_name, texts[i], r, args, i) for i, r in enumerate(results)]
        return out[0] if len(out) == 1 else out

    return _respond(ctx, runs, lambda gen, i: native_events(ctx.model_name, texts[i], gen, i), False, whole)


# -- the other chat APIs: Anthropic Messages, OpenAI Responses (converted to chat) ---------------------------

async def anthropic_messages(request: Request):
    ctx = _ctx(request)
    try:
        check_generating(ctx)
        data = parse_json(await read_body(request, ctx.settings.max_body_bytes))
        args, tools = await _chat_setup(ctx, Body(anthropic.to_chat(data)))
    except ApiError as e:
        raise anthropic.AnthropicError.of(e) from None
    meta = anthropic.MessageMeta(ctx.model_name)
    parse = tools if tools is not None and tools.parse else None

    async def whole(gens: list[Generation]) -> dict:
        try:
            return anthropic.message(meta, await gens[0].result(), parse, args.think)
        except ApiError as e:
            raise anthropic.AnthropicError.of(e) from None

    return _respond(ctx, [args], lambda gen, i: anthropic.message_events(meta, gen, parse), False, whole,
                    named=True)


async def anthropic_count_tokens(request: Request):
    ctx = _ctx(request)
    try:
        data = parse_json(await read_body(request, ctx.settings.max_body_bytes))
        tokens = await _chat_tokens(ctx, Body(anthropic.to_chat(data, count_only=True)))
    except ApiError as e:
        raise anthropic.AnthropicError.of(e) from None
    return JsonResponse({"input_tokens": len(tokens)})


async def responses_create(request: Request):
    ctx = _ctx(request)
    check_generating(ctx)
    data = (await _body(request)).data
    args, tools = await _chat_setup(ctx, Body(responses.to_chat(data)))
    meta = responses.ResponseMeta(ctx.model_name, data)
    parse = tools if tools is not None and tools.parse else None

    async def whole(gens: list[Generation]) -> dict:
        return responses.response(meta, await gens[0].result(), parse, args.think)

    return _respond(ctx, [args], lambda gen, i: responses.response_events(meta, gen, parse), False, whole,
                    named=True)


async def chat_input_tokens(request: Request):
    tokens = await _chat_tokens(_ctx(request), await _body(request))
    return JsonResponse({"object": "response.input_tokens", "input_tokens": len(tokens)})


async def responses_input_tokens(request: Request):
    body = Body(responses.to_chat((await _body(request)).data))
    tokens = await _chat_tokens(_ctx(request), body)
    return JsonResponse({"object": "response.input_tokens", "input_tokens": len(tokens)})


# -- token utilities ---------------------------------------------------------------------------------------

async def tokenize(request: Request):
    ctx = _ctx(request)
    body = await _body(request)
    content = body.data.get("content", "")
    pieces = prompt_pieces(content) if content != "" else []
    add_special, parse_special = body.bool("add_special", False), body.bool("parse_special", True)
    tokens: list[int] = []
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            tokens += await _encode(ctx, piece, add_special and i == 0, parse_special)
        else:
            tokens.append(piece)
    check_tokens(tokens, ctx.tokenizer.n_vocab, "content")
    if not body.bool("with_pieces"):
        return JsonResponse({"tokens": tokens})
    out = []
    for t in tokens:
        raw = ctx.tokenizer.token_to_piece(t)
        try:
            piece: str | list[int] = raw.decode("utf-8")
        except UnicodeDecodeError:
            piece = list(raw)
        out.append({"id": t, "piece": piece})
    return JsonResponse({"tokens": out})


async def detokenize(request: Request):
    ctx = _ctx(request)
    body = await _body(request)
    tokens = body.data.get("tokens", [])
    if not isinstance(tokens, list):
        raise bad_request("'tokens' must be an array of token ids")
    check_tokens(tokens, ctx.tokenizer.n_vocab, "'tokens'")
    text = b"".join(ctx.tokenizer.token_to_piece(t) for t in tokens).decode("utf-8", "replace")
    return JsonResponse({"content": text})


async def apply_template(request: Request):
    ctx = _ctx(request)
    return JsonResponse({"prompt": await _chat_prompt(ctx, await _body(request))})


# -- the route table ---------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/health", health),
    ("GET", "/v1/health", health),
    ("GET", "/props", props),
    ("GET", "/models", models),
    ("GET", "/v1/models", models),
    ("GET", "/slots", slots),
    ("GET", "/lora-adapters", lora_adapters),
    ("POST", "/lora-adapters", set_lora_adapters),
    ("POST", "/slots/{id_slot}", slot_action),
    ("GET", "/metrics", metrics),
    ("POST", "/completion", resumable(completion_native)),
    ("POST", "/completions", resumable(completion_native)),
    ("POST", "/v1/completions", resumable(completions_oai)),
    ("POST", "/chat/completions", resumable(chat_completions)),
    ("POST", "/v1/chat/completions", resumable(chat_completions)),
    ("POST", "/v1/messages", resumable(anthropic_messages)),
    ("POST", "/v1/messages/count_tokens", anthropic_count_tokens),
    ("POST", "/responses", resumable(responses_create)),
    ("POST", "/v1/responses", resumable(responses_create)),
    ("POST", "/chat/completions/input_tokens", chat_input_tokens),
    ("POST", "/v1/chat/completions/input_tokens", chat_input_tokens),
    ("POST", "/responses/input_tokens", responses_input_tokens),
    ("POST", "/v1/responses/input_tokens", responses_input_tokens),
    ("POST", "/infill", resumable(infill)),
    ("POST", "/v1/embeddings", embeddings_oai),
    ("POST", "/embedding", embeddings_native),
    ("POST", "/embeddings", embeddings_native),
    *(("POST", path, rerank) for path in ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")),
    ("GET", "/v1/stream/{conv_id:path}", stream_get),
    ("GET", "/v1/stream", stream_get),
    ("DELETE", "/v1/stream/{conv_id:path}", stream_delete),
    ("DELETE", "/v1/stream", stream_delete),
    ("POST", "/v1/streams/lookup", streams_lookup),
    ("POST", "/tokenize", tokenize),
    ("POST", "/detokenize", detokenize),
    ("POST", "/apply-template", apply_template),
    ("GET", "/tools", tools_get),
    ("POST", "/tools", tools_post),
    ("GET", "/cors-proxy", cors_proxy),
    ("POST", "/cors-proxy", cors_proxy),
]


def create_app(ctx: ServerContext) -> ASGIApp:
    routes = [Route(path, endpoint, methods=[method]) for method, path, endpoint in ROUTES]
    app_ref: list[ASGIApp] = []
    gcp = ctx.settings.gcp
    if gcp is not None:  # Vertex AI (AIP_MODE=PREDICTION): the predict route sends instances to the others
        if gcp.predict_route in {path for _, path, _ in ROUTES}:
            raise ValueError(f"AIP_PREDICT_ROUTE={gcp.predict_route} conflicts with an existing route")
        routes.append(Route(gcp.predict_route, predict_endpoint(app_ref, [p for m, p, _ in ROUTES if m == "POST"]),
                            methods=["POST"]))
        if gcp.health_route:
            routes.append(Route(gcp.health_route, health, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app_ref.append(app)
    app.state.ctx = ctx
    app.state.toolbox, app.state.cors_proxy = ctx.toolbox, ctx.settings.cors_proxy
    app.state.started = time.time()
    awake = WakeOnRequest(app, ctx.engine) if ctx.settings.sleep_idle_seconds > 0 else app
    gated = Gate(awake, api_keys=ctx.api_keys, ready=lambda: ctx.ready, public_paths=PUBLIC_PATHS,
                 router_secret=ctx.settings.router_secret, cors=ctx.settings.cors())
    return WebUI(gated) if ctx.settings.webui else gated  # the web UI: public, served while loading
