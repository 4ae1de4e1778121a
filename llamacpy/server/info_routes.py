"""The server's information routes: /health, /props, /models, /slots, /metrics, /lora-adapters, answered as
llama-server answers them."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from .context import ServerContext
from .errors import ApiError
from .formats import FINGERPRINT
from .jsonio import JsonResponse
from .params import Body, lora_entries, parse_json, read_body, request_args


def _ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


async def health(request: Request):
    return JsonResponse({"status": "ok"})


def _default_settings(ctx: ServerContext) -> dict:
    return request_args(ctx, Body({}), []).settings_json()


async def props(request: Request):
    ctx, s = _ctx(request), _ctx(request).settings
    return JsonResponse({
        "default_generation_settings": {"params": _default_settings(ctx), "n_ctx": ctx.n_ctx_slot},
        "total_slots": s.n_slots, "model_alias": ctx.model_name, "model_path": str(ctx.path),
        "model_ftype": ctx.model_facts["ftype"],
        "modalities": {"vision": False, "video": False, "audio": False}, "media_marker": "<__media__>",
        "endpoint_slots": s.slots, "endpoint_props": False, "endpoint_metrics": s.metrics,
        "ui": s.webui, "ui_settings": {}, "chat_template": ctx.template.source,
        "chat_template_caps": ctx.template_caps(), "bos_token": ctx.token_text("bos"),
        "eos_token": ctx.token_text("eos"), "build_info": FINGERPRINT, "is_sleeping": ctx.engine.sleeping.is_set(),
        "cors_proxy_enabled": s.cors_proxy, "embedding": s.embedding, "pooling": ctx.pooling if s.embedding else None,
        "model_draft_path": str(ctx.draft_path) if ctx.draft_path else None,
    })


async def models(request: Request):
    ctx = _ctx(request)
    f = ctx.model_facts
    created = int(ctx.path.stat().st_mtime) if ctx.path else 0
    aliases = ctx.aliases
    meta = {k: f[k] for k in ("vocab_type", "n_vocab", "n_ctx_train", "n_embd", "n_params", "size")}
    return JsonResponse({
        "object": "list",
        "data": [{"id": ctx.model_name, "aliases": aliases, "tags": ctx.settings.tags, "object": "model", "created": created,
                  "owned_by": "llamacpp", "meta": meta}],
        "models": [{"name": ctx.model_name, "model": ctx.model_name, "modified_at": "", "size": str(f["size"]),
                    "digest": "", "type": "model", "description": "", "tags": [""],
                    "capabilities": ["embedding" if ctx.settings.embedding else "completion"], "parameters": "",
                    "details": {"parent_model": "", "format": "gguf", "family": f["arch"], "families": [f["arch"]],
                                "parameter_size": str(f["n_params"]), "quantization_level": ""}}],
    })


async def lora_adapters(request: Request):
    """GET /lora-adapters: the loaded adapters and their server-wide scales, as llama-server lists them."""
    ctx = _ctx(request)
    adapters = ctx.lora.adapters if ctx.lora is not None else []
    return JsonResponse([{"id": i, "path": a.path, "scale": scale, "task_name": a.task_name,
                          "prompt_prefix": a.prompt_prefix} for i, (a, scale) in
                         enumerate(zip(adapters, ctx.lora_scales))])


async def set_lora_adapters(request: Request):
    """POST /lora-adapters [{"id": 0, "scale": 0.5}, ...]: the scales of later requests (unlisted: 0)."""
    ctx = _ctx(request)
    body = parse_json(await read_body(request, ctx.settings.max_body_bytes), list)
    ctx.set_lora_scales(lora_entries(body))
    return JsonResponse({"success": True})


async def slots(request: Request):
    ctx = _ctx(request)
    if not ctx.settings.slots:
        raise ApiError(501, "This server does not support slots endpoint. Start it with `--slots`")
    infos = ctx.engine.slots()
    if request.query_params.get("fail_on_no_slot") in ("1", "true") and all(i.request for i in infos):
        raise ApiError(503, "no slot available")
    defaults = _default_settings(ctx)
    out = []
    for i in infos:
        req = i.request
        params = dict(defaults)
        if req is not None:
            params.update(n_predict=req.n_predict, seed=req.sampling.seed, temperature=req.sampling.temperature,
                          top_k=req.sampling.top_k, top_p=req.sampling.top_p, min_p=req.sampling.min_p,
                          n_probs=req.n_probs, ignore_eos=req.ignore_eos, cache_prompt=req.cache_prompt)
        slot = {"id": i.id, "n_ctx": i.n_ctx, "speculative": i.speculative, "is_processing": req is not None}
        if req is not None:  # as llama-server: a slot's task fields only while it has one
            n_remain = -1 if req.n_predict < 0 else req.n_predict - i.n_decoded
            slot.update(id_task=req.id, params=params, next_token=[{
                "has_next_token": True, "has_new_line": False, "n_remain": n_remain, "n_decoded": i.n_decoded}])
        out.append(slot)
    return JsonResponse(out)


METRICS = [  # llama-server's: name, type, help, value(counters, rates since the last scrape)
    ("prompt_tokens_total", "counter", "Number of prompt tokens processed, excluding cached tokens",
     lambda c, w: c.prompt_tokens),
    ("prompt_tokens_cached_total", "counter", "Number of prompt tokens reused from the cache",
     lambda c, w: c.prompt_tokens_cached),
    ("prompt_seconds_total", "counter", "Total time spent processing prompts", lambda c, w: c.prompt_seconds),
    ("tokens_predicted_total", "counter", "Number of generation tokens processed", lambda c, w: c.tokens_predicted),
    ("tokens_predicted_seconds_total", "counter", "Total time spent generating tokens",
     lambda c, w: c.predicted_seconds),
    ("n_decode_total", "counter",
     "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding",
     lambda c, w: c.n_decode),
    ("n_tokens_max", "counter", "Largest observed sequence length (prompt + generation)",
     lambda c, w: c.n_tokens_max),
    ("spec_decode_num_draft_tokens_total", "counter", "Speculative: Total draft tokens generated",
     lambda c, w: c.n_drafted),
    ("spec_decode_num_accepted_tokens_total", "counter",
     "Speculative: Total draft tokens accepted by the target model", lambda c, w: c.n_draft_accepted),
    ("spec_decode_num_drafts_total", "counter", "Speculative: Total speculative decoding verification steps",
     lambda c, w: c.n_draft_steps),
    ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s",
     lambda c, w: _rate(c.prompt_tokens - w.prompt_tokens, c.prompt_seconds - w.prompt_seconds)),
    ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s",
     lambda c, w: _rate(c.predicted_steps - w.predicted_steps, c.predicted_seconds - w.predicted_seconds)),
]


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 1e-9 else 0.0


async def metrics(request: Request):
    """Prometheus text; the throughput gauges cover the time since the previous scrape (as llama-server's)."""
    ctx = _ctx(request)
    if not ctx.settings.metrics:
        raise ApiError(501, "This server does not support metrics endpoint. Start it with `--metrics`")
    c = dataclasses.replace(ctx.engine.counters())
    window, ctx.metrics_scraped = ctx.metrics_scraped, c
    busy = sum(1 for i in ctx.engine.slots() if i.request is not None)
    rows = [(name, kind, help_text, value(c, window)) for name, kind, help_text, value in METRICS]
    rows += [("requests_processing", "gauge", "Number of requests processing", busy),
             ("requests_deferred", "gauge", "Number of requests deferred", ctx.engine.n_waiting()),
             ("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call",
              c.n_busy_slots / max(c.n_decode, 1))]
    lines = []
    for name, kind, help_text, value in rows:
        lines += [f"# HELP llamacpp:{name} {help_text}", f"# TYPE llamacpp:{name} {kind}", f"llamacpp:{name} {value}"]
    out = PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
    out.raw_headers.append((b"Process-Start-Time-Unix", str(ctx.t_start).encode()))  # llama-server's casing
    return out
