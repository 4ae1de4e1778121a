"""Embedding routes (llama-server's handle_embeddings_impl): POST /v1/embeddings (OpenAI), /embedding and
/embeddings (native), and the rerank routes, which answer 501 (no reranker model runs here yet).

The handler tokenizes; the embedding engine (engine/embedding.py) pools and normalizes on its thread.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from starlette.requests import Request

from ..engine.embedding import EmbedRequest
from .context import ServerContext
from .errors import ApiError, bad_request, exceeds_context
from .jsonio import JsonResponse
from .params import Body, check_tokens, parse_json, prompt_list, read_body

BIG_TEXT = 8192  # characters: tokenize longer texts off the event loop
EMPTY = "Input content cannot be empty"


async def _tokens(ctx: ServerContext, pieces: list[str | int]) -> list[int]:
    """A mixed prompt as llama-server tokenizes it: special tokens parsed, BOS/CLS (and SEP) per the model
    around a leading string, token ids as they are."""
    tok, out = ctx.tokenizer, []
    for i, piece in enumerate(pieces):
        if isinstance(piece, int):
            out.append(piece)
        elif len(piece) > BIG_TEXT:
            out += await asyncio.to_thread(tok.encode, piece, i == 0, True)
        else:
            out += tok.encode(piece, i == 0, True)
    return check_tokens(out, tok.n_vocab, "input")


async def _inputs(ctx: ServerContext, value: Any) -> list[list[int]]:
    if value == [] or (isinstance(value, list) and any(v == [] for v in value)):
        raise bad_request(EMPTY)
    try:
        prompts = prompt_list(value)
    except ApiError as e:
        if e.status != 400:  # multimodal input: 501
            raise
        raise bad_request("'input' must be a string, an array of token ids, a mixed array of both, or an array "
                          "of such inputs") from None
    out = []
    for pieces in prompts:
        tokens = await _tokens(ctx, pieces)
        if not tokens:
            raise bad_request(EMPTY)
        if len(tokens) > ctx.n_ctx:  # no cache is kept: an input may use the whole context
            # llama-server's words for an input it cannot embed (its limit is the batch; ours the context)
            raise exceeds_context(len(tokens), ctx.n_ctx, f"input ({len(tokens)} tokens) is too large to process: "
                                                          f"larger than the max context size ({ctx.n_ctx} tokens)")
        out.append(tokens)
    return out


def _embed(ctx: ServerContext, prompts: list[list[int]], embd_normalize: int) -> asyncio.Future:
    """Queue the inputs on the embedding engine; the future gets one array per input."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(vectors: list[np.ndarray] | None, error: str | None) -> None:  # on the engine thread
        def settle() -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(ApiError(500, error))
            else:
                fut.set_result(vectors)
        loop.call_soon_threadsafe(settle)

    ctx.engine.submit(EmbedRequest(prompts, ctx.pooling, embd_normalize, done))
    return fut


def _check_enabled(ctx: ServerContext) -> None:
    if not ctx.settings.embedding:
        raise ApiError(501, "This server does not support embeddings. Start it with `--embeddings`")


async def _handle(request: Request, oai: bool) -> JsonResponse:
    ctx: ServerContext = request.app.state.ctx
    _check_enabled(ctx)
    if oai and ctx.pooling == "none":
        raise bad_request("Pooling type 'none' is not OAI compatible. Please use a different pooling type")
    body = Body(parse_json(await read_body(request, ctx.settings.max_body_bytes)))
    if "input" in body.data:
        value = body.data["input"]
    elif "content" in body.data:
        value, oai = body.data["content"], False  # "content" is not OpenAI's: the native answer
    else:
        raise bad_request('"input" or "content" must be provided')
    fmt = body.data.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad_request("The format to return the embeddings in. Can be either float or base64")
    embd_normalize = body.int("embd_normalize", ctx.settings.embd_normalize, minimum=-1)
    prompts = await _inputs(ctx, value)
    vectors = await _embed(ctx, prompts, embd_normalize)
    if not oai:
        return JsonResponse([{"index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)])
    data = []
    for i, v in enumerate(vectors):
        if fmt == "base64":
            text = base64.b64encode(v[0].astype("<f4").tobytes()).decode("ascii")
            data.append({"embedding": text, "index": i, "object": "embedding", "encoding_format": "base64"})
        else:
            data.append({"embedding": v[0].tolist(), "index": i, "object": "embedding"})
    n_tokens = sum(len(p) for p in prompts)
    model = body.data.get("model") if isinstance(body.data.get("model"), str) else ctx.model_name
    return JsonResponse({"model": model, "object": "list",
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}, "data": data})


async def embeddings_oai(request: Request) -> JsonResponse:
    """POST /v1/embeddings: OpenAI's shape (pooled, normalized; base64 on request)."""
    return await _handle(request, oai=True)


async def embeddings_native(request: Request) -> JsonResponse:
    """POST /embedding, /embeddings: [{"index", "embedding": [[...]]}] (per token with pooling none)."""
    return await _handle(request, oai=False)


async def rerank(request: Request) -> JsonResponse:
    """POST /rerank and its aliases: a reranking server needs --reranking and a reranker model (none runs here
    yet, so a server never starts with --reranking)."""
    raise ApiError(501, "This server does not support reranking. Start it with `--reranking`")


def check_generating(ctx: ServerContext) -> None:
    """Completion routes on an embeddings server: 501, as llama-server."""
    if ctx.settings.embedding:
        raise ApiError(501, "This server does not support completions. Start it without `--embeddings`")
