"""Embedding routes (llama-server's handle_embeddings_impl): POST /v1/embeddings (OpenAI), /embedding and
/embeddings (native), and the rerank routes (its post_rerank: a --reranking server, whose model has a
classification head, scores each query/document pair).

The handler tokenizes; the embedding engine (engine/embedding.py) pools and normalizes on its thread.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from starlette.requests import Request

from ..engine.embedding import EmbedRequest
from ..engine.textembed import rerank_prompts
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
        out.append(_fitting(ctx, tokens))
    return out


def _fitting(ctx: ServerContext, tokens: list[int]) -> list[int]:
    """The tokens of one input, or 400 when they exceed the context (no cache is kept: an input may use it all)."""
    if len(tokens) > ctx.n_ctx:
        # llama-server's words for an input it cannot embed (its limit is the batch; ours the context)
        raise exceeds_context(len(tokens), ctx.n_ctx, f"input ({len(tokens)} tokens) is too large to process: "
                                                      f"larger than the max context size ({ctx.n_ctx} tokens)")
    return tokens


def _model_name(ctx: ServerContext, data: dict) -> str:
    """The answer's "model": the request's when it names one, else the server's."""
    return data["model"] if isinstance(data.get("model"), str) else ctx.model_name


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
    return JsonResponse({"model": _model_name(ctx, body.data), "object": "list",
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}, "data": data})


async def embeddings_oai(request: Request) -> JsonResponse:
    """POST /v1/embeddings: OpenAI's shape (pooled, normalized; base64 on request)."""
    return await _handle(request, oai=True)


async def embeddings_native(request: Request) -> JsonResponse:
    """POST /embedding, /embeddings: [{"index", "embedding": [[...]]}] (per token with pooling none)."""
    return await _handle(request, oai=False)


async def rerank(request: Request) -> JsonResponse:
    """POST /rerank and its aliases: {"query", "documents" (or TEI's "texts"), "top_n"} -> the documents by
    descending relevance_score (the classification head's first output); the TEI form answers a bare list
    of {"index", "score"} (with "text" on "return_text")."""
    ctx: ServerContext = request.app.state.ctx
    if ctx.pooling != "rank":
        raise ApiError(501, "This server does not support reranking. Start it with `--reranking`")
    body = Body(parse_json(await read_body(request, ctx.settings.max_body_bytes)))
    data = body.data
    tei = "texts" in data
    if "query" not in data:
        raise bad_request('"query" must be provided')
    if not isinstance(data["query"], str):
        raise bad_request('"query" must be a string')
    docs = data.get("documents", data.get("texts"))
    if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
        raise bad_request('"documents" must be a non-empty string array')
    top_n = body.int("top_n", len(docs))
    prompts = [_fitting(ctx, check_tokens(tokens, ctx.tokenizer.n_vocab, "input"))
               for tokens in rerank_prompts(ctx.tokenizer, ctx.rerank_template, data["query"], docs)]
    scores = await _embed(ctx, prompts, -1)
    label = "score" if tei else "relevance_score"
    results = []
    for i, s in enumerate(scores):
        item = {"index": i, label: float(s.reshape(-1)[0])}
        if tei and body.bool("return_text"):
            item["text"] = docs[i]
        results.append(item)
    results.sort(key=lambda r: -r[label])
    results = results[:max(0, top_n)]
    if tei:
        return JsonResponse(results)
    n_tokens = sum(len(p) for p in prompts)
    return JsonResponse({"model": _model_name(ctx, data), "object": "list",
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}, "results": results})


def check_generating(ctx: ServerContext) -> None:
    """Completion routes on an embeddings server: 501, as llama-server."""
    if ctx.settings.embedding:
        raise ApiError(501, "This server does not support completions. Start it without `--embeddings`")
