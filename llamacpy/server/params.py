"""Request bodies -> generation arguments: typed field access, sampling fields, prompts.

Unknown fields are ignored (OpenAI clients send many); a known field of the wrong type or out of range is
a 400 naming the field. Field names and defaults are llama-server's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..engine import GenRequest
from ..engine.speculative import DraftParams
from ..sampling import SamplingParams
from ..sampling.chain import SEED_RANDOM, sampler_names
from ..sampling.dry import breaker_sequences
from ..sampling.grammar import Grammar
from .errors import ApiError, bad_request
from .reasoning import Thinking

if TYPE_CHECKING:
    from .context import ServerContext

_MISSING: Any = object()


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes before it is read whole."""
    too_big = ApiError(413, f"the request body is larger than {limit} bytes")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, kind: type | tuple[type, ...] = dict) -> dict:
    """A request body as a JSON object (`kind` list: an array; strict: NaN/Infinity and invalid UTF-8 are
    rejected)."""
    def no_constants(name: str) -> None:
        raise ValueError(f"invalid JSON value {name}")

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError as e:
        raise bad_request(f"the request body is not valid UTF-8 (byte {e.start})") from None
    except RecursionError:
        raise bad_request("the request body nests too deeply") from None
    except ValueError as e:
        raise bad_request(f"invalid JSON in the request body: {e}") from None
    if not isinstance(data, kind):
        raise bad_request("Request body must be an array" if kind is list else "the request body must be a JSON object")
    return data


class Body:
    """Typed getters over a JSON object; `None` counts as absent."""

    def __init__(self, data: dict):
        self.data = data

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _raw(self, key: str, default: Any) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def bool(self, key: str, default: bool = False) -> bool:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise bad_request(f"'{key}' must be a boolean")
        return value

    def int(self, key: str, default: int = 0, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._raw(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"'{key}' must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise bad_request(f"'{key}' must be {bounds}, got {value}")
        return value

    def float(self, key: str, default: float = 0.0, minimum: float | None = None,
              maximum: float | None = None) -> float:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad_request(f"'{key}' must be a finite number")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise bad_request(f"'{key}' must be {bounds}, got {value}")
        return float(value)

    def str(self, key: str, default: str = "") -> str:
        value = self._raw(key, default)
        if not isinstance(value, str):
            raise bad_request(f"'{key}' must be a string")
        return value

    def object(self, key: str) -> dict:
        value = self._raw(key, {})
        if not isinstance(value, dict):
            raise bad_request(f"'{key}' must be an object")
        return value

    def first_int(self, keys: tuple[str, ...], default: int, minimum: int) -> int:
        for key in keys:
            if self.has(key):
                return self.int(key, default, minimum)
        return default


@dataclass
class GenArgs:
    """Everything one completion needs, text-level parts (stop strings, output options) included."""

    prompt: list[int]
    sampling: SamplingParams
    n_predict: int = -1
    ignore_eos: bool = False
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    n_probs: int = 0
    cache_prompt: bool = True
    id_slot: int = -1
    return_tokens: bool = False
    post_sampling_probs: bool = False  # n_probs as probabilities after the sampler chain
    return_progress: bool = False  # streams: prompt_progress frames while the prompt is evaluated
    n_keep: int = 0  # context shift: prompt tokens kept (-1: all), and tokens dropped after them (0: half)
    n_discard: int = 0
    n_cache_reuse: int = 0  # --cache-reuse: least run of cached tokens moved into place
    timings_per_token: bool = False  # streams: `timings` in every frame, not only the last
    grammar: Grammar | None = None
    draft: DraftParams = field(default_factory=DraftParams)  # speculative.n_max/n_min/p_min
    think: Thinking | None = None  # chat routes: how the reply's reasoning is split out (reasoning.py)
    lora: tuple[float, ...] | None = None  # the request's LoRA scales (None: the server's)
    lora_entries: list[tuple[int, float]] = field(default_factory=list)  # ... as the request listed them

    def engine_request(self, sink) -> GenRequest:
        return GenRequest(list(self.prompt), self.sampling, self.n_predict, self.ignore_eos, self.logprobs,
                          self.n_probs, self.post_sampling_probs, self.cache_prompt, self.id_slot, self.grammar,
                          self.draft, sink, return_progress=self.return_progress and self.stream,
                          n_keep=self.n_keep, n_discard=self.n_discard, n_cache_reuse=self.n_cache_reuse,
                          lora=self.lora)

    def settings_json(self) -> dict:
        """`generation_settings` / slot `params` as llama-server reports them."""
        s = self.sampling
        return {"n_predict": self.n_predict, "seed": s.seed, "temperature": s.temperature,
                "dynatemp_range": s.dynatemp_range, "dynatemp_exponent": s.dynatemp_exponent,
                "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p, "top_n_sigma": s.top_n_sigma,
                "xtc_probability": s.xtc_probability, "xtc_threshold": s.xtc_threshold, "typical_p": s.typical_p,
                "repeat_last_n": s.repeat_last_n, "repeat_penalty": s.repeat_penalty,
                "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty,
                "dry_multiplier": s.dry_multiplier, "dry_base": s.dry_base,
                "dry_allowed_length": s.dry_allowed_length, "dry_penalty_last_n": s.dry_penalty_last_n,
                "dry_sequence_breakers": list(s.dry_sequence_breakers), "mirostat": s.mirostat,
                "mirostat_tau": s.mirostat_tau, "mirostat_eta": s.mirostat_eta, "min_keep": s.min_keep,
                "stop": list(self.stop), "n_probs": self.n_probs, "n_keep": self.n_keep, "n_discard": self.n_discard,
                "n_cache_reuse": self.n_cache_reuse,
                "ignore_eos": self.ignore_eos, "stream": self.stream, "cache_prompt": self.cache_prompt,
                "logit_bias": [{"bias": v if math.isfinite(v) else None, "token": int(k)}  # -inf is null
                               for k, v in s.logit_bias.items()],
                "samplers": list(s.samplers),
                "speculative.n_max": self.draft.n_max, "speculative.n_min": self.draft.n_min,
                "speculative.p_min": self.draft.p_min,
                "lora": [{"id": i, "scale": s} for i, s in self.lora_entries]}


def lora_entries(value: list) -> list[tuple[int, float]]:
    """(id, scale) of each {"id", "scale"} of a "lora" list (llama-server's parse_lora_request: id -1 and scale 0
    when missing, the last entry of an id winning)."""
    out: dict[int, float] = {}
    for entry in value:
        if not isinstance(entry, dict):
            raise bad_request("'lora' must be an array of objects with 'id' and 'scale' fields")
        i, scale = entry.get("id", -1), entry.get("scale", 0.0)
        if isinstance(i, bool) or not isinstance(i, int) or isinstance(scale, bool) \
                or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise bad_request("each 'lora' entry needs an integer 'id' and a number 'scale'")
        out[i] = float(scale)
    return sorted(out.items())


def draft_params(body: Body, defaults: DraftParams) -> DraftParams:
    """llama-server's `speculative.n_max`, `speculative.n_min` (clamped to [0, n_max]), `speculative.p_min`."""
    n_max = max(0, body.int("speculative.n_max", defaults.n_max))
    n_min = max(0, min(n_max, body.int("speculative.n_min", defaults.n_min)))
    return DraftParams(n_max, n_min, body.float("speculative.p_min", defaults.p_min, minimum=0.0, maximum=1.0))


def sampling_params(body: Body, defaults: SamplingParams, n_vocab: int, tokenize) -> SamplingParams:
    """Sampling fields over the server's defaults, with llama-server's names and limits. `seed` -1 (or
    absent) draws a random seed; `dry_base` below 1 keeps the default, as llama-server."""
    d = defaults
    seed = body.int("seed", -1 if d.seed in (SEED_RANDOM, -1) else d.seed)
    dry_base = body.float("dry_base", d.dry_base)
    params = SamplingParams(
        temperature=body.float("temperature", d.temperature),
        top_k=body.int("top_k", d.top_k),
        top_p=body.float("top_p", d.top_p, minimum=0.0),
        min_p=body.float("min_p", d.min_p, minimum=0.0, maximum=1.0),
        typical_p=body.float("typical_p", d.typical_p),
        top_n_sigma=body.float("top_n_sigma", d.top_n_sigma),
        xtc_probability=body.float("xtc_probability", d.xtc_probability, minimum=0.0, maximum=1.0),
        xtc_threshold=body.float("xtc_threshold", d.xtc_threshold, minimum=0.0, maximum=1.0),
        dynatemp_range=body.float("dynatemp_range", d.dynatemp_range),
        dynatemp_exponent=body.float("dynatemp_exponent", d.dynatemp_exponent),
        repeat_penalty=body.float("repeat_penalty", d.repeat_penalty, minimum=0.0),
        repeat_last_n=body.int("repeat_last_n", d.repeat_last_n, minimum=-1),
        presence_penalty=body.float("presence_penalty", d.presence_penalty),
        frequency_penalty=body.float("frequency_penalty", d.frequency_penalty),
        dry_multiplier=body.float("dry_multiplier", d.dry_multiplier),
        dry_base=dry_base if dry_base >= 1.0 else d.dry_base,
        dry_allowed_length=body.int("dry_allowed_length", d.dry_allowed_length, minimum=0),
        dry_penalty_last_n=body.int("dry_penalty_last_n", d.dry_penalty_last_n, minimum=-1),
        dry_sequence_breakers=dry_sequence_breakers(body, d.dry_sequence_breakers),
        mirostat=body.int("mirostat", d.mirostat, minimum=0, maximum=2),
        mirostat_tau=body.float("mirostat_tau", d.mirostat_tau),
        mirostat_eta=body.float("mirostat_eta", d.mirostat_eta),
        min_keep=body.int("min_keep", d.min_keep, minimum=0),
        samplers=samplers(body, d.samplers),
        seed=SEED_RANDOM if seed == -1 else seed & 0xFFFFFFFF,
        logit_bias=dict(d.logit_bias),
    )
    try:
        params.validate()
    except ValueError as e:
        raise bad_request(str(e)) from None
    if body.has("logit_bias"):
        params.logit_bias.update(logit_bias(body.data["logit_bias"], n_vocab, tokenize))
    return params


def dry_sequence_breakers(body: Body, default: tuple[str, ...]) -> tuple[str, ...]:
    if not body.has("dry_sequence_breakers"):
        return default
    value = body.data["dry_sequence_breakers"]
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise bad_request("'dry_sequence_breakers' must be a non-empty array of strings")
    return tuple(value)


def samplers(body: Body, default: tuple[str, ...]) -> tuple[str, ...]:
    """`samplers`: an array of sampler names or a string of their letters (llama-server's two forms)."""
    if not body.has("samplers"):
        return default
    value = body.data["samplers"]
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        return sampler_names(value)
    raise bad_request("'samplers' must be an array of sampler names or a string of sampler letters")


def logit_bias(value: Any, n_vocab: int, tokenize) -> dict[int, float]:
    """OpenAI's {"id": bias} or llama-server's [[id|text, bias|false], ...]; false bans the token.
    Ids out of the vocabulary are ignored, as llama-server does."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = value
    else:
        raise bad_request("'logit_bias' must be an object {token: bias} or an array of [token, bias] pairs")
    out: dict[int, float] = {}
    for key, bias in pairs:
        if bias is False:
            bias = -math.inf
        elif isinstance(bias, bool) or not isinstance(bias, int | float) or not math.isfinite(bias):
            raise bad_request("'logit_bias' values must be finite numbers (or false to ban a token)")
        if isinstance(key, int) and not isinstance(key, bool):
            ids = [key]
        elif isinstance(key, str) and key.lstrip("-").isdigit():
            ids = [int(key)]
        elif isinstance(key, str):
            ids = tokenize(key)
        else:
            raise bad_request("'logit_bias' keys must be token ids or strings")
        out.update({t: float(bias) for t in ids if 0 <= t < n_vocab})
    return out


def stop_strings(body: Body) -> list[str]:
    value = body.data.get("stop")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise bad_request("'stop' must be a string or an array of strings")


def common_args(body: Body, prompt: list[int], defaults: SamplingParams, n_vocab: int, tokenize,
                server_n_predict: int = -1, ignore_eos: bool = False, server_n_keep: int = 0, server_cache_reuse: int = 0) -> GenArgs:
    """The fields every completion route shares (the route sets logprobs its own way)."""
    n_predict = body.first_int(("n_predict", "max_tokens", "max_completion_tokens"), -1, minimum=-1)
    if n_predict < 0:  # -n is the default of a request that sets none (llama-server's n_predict_max)
        n_predict = server_n_predict
    options = body.object("stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad_request("'stream_options.include_usage' must be a boolean")
    return GenArgs(
        prompt=prompt,
        sampling=sampling_params(body, defaults, n_vocab, tokenize),
        n_predict=n_predict,
        ignore_eos=body.bool("ignore_eos", ignore_eos),
        stop=stop_strings(body),
        stream=body.bool("stream"),
        include_usage=include_usage,
        cache_prompt=body.bool("cache_prompt", True),
        id_slot=body.int("id_slot", -1, minimum=-1),
        return_tokens=body.bool("return_tokens"),
        post_sampling_probs=body.bool("post_sampling_probs"),
        return_progress=body.bool("return_progress"),
        n_keep=body.int("n_keep", server_n_keep, minimum=-1),
        n_discard=body.int("n_discard", 0, minimum=0),
        n_cache_reuse=body.int("n_cache_reuse", server_cache_reuse, minimum=0),
        timings_per_token=body.bool("timings_per_token"),
    )


@dataclass(frozen=True)
class ConstraintSpec:
    """What the output must match, as the request gave it: GBNF text, or a JSON schema ({} = any JSON)."""

    gbnf: str | None = None
    json_schema: dict | None = None
    lark: str | None = None  # llguidance's Lark text (forced tool calls)


def constraint_spec(body: Body, chat: bool) -> ConstraintSpec | None:
    """llama-server's `grammar` / `json_schema` fields, and on chat routes `response_format`."""
    if body.has("grammar") and body.has("json_schema"):
        raise bad_request("either 'json_schema' or 'grammar' can be given, not both")
    schema = _schema(body.data["json_schema"], "'json_schema'") if body.has("json_schema") else None
    if chat:
        from_format = response_format_schema(body.object("response_format"))
        if from_format is not None:
            if body.has("grammar"):
                raise bad_request("'response_format' cannot be combined with 'grammar'")
            schema = from_format
    if schema is not None:
        # llama.cpp's json-schema-to-grammar reads the empty schema as "any object" (llguidance: any value)
        return ConstraintSpec(json_schema=schema or {"type": "object"})
    grammar = body.str("grammar")
    return ConstraintSpec(gbnf=grammar) if grammar.strip() else None


def response_format_schema(fmt: dict) -> dict | None:
    """The schema a chat `response_format` asks for; None for plain text."""
    kind = fmt.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return _schema(fmt.get("schema") or {}, "'response_format.schema'")
    if kind == "json_schema":
        wrapper = fmt.get("json_schema")
        if not isinstance(wrapper, dict):
            raise bad_request("'response_format.json_schema' must be an object with a 'schema'")
        return _schema(wrapper.get("schema") or {}, "'response_format.json_schema.schema'")
    raise bad_request(f'response_format type must be one of "text", "json_object" or "json_schema", '
                      f'but got: {kind}')


def _schema(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be a JSON schema object")
    return value


def check_tokens(tokens: list, n_vocab: int, what: str = "prompt") -> list[int]:
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < n_vocab:
            raise bad_request(f"{what} token ids must be integers in [0, {n_vocab})")
    return tokens


def n_choices(body: Body) -> int:
    """Completions per prompt: OpenAI's `n`, llama-server's `n_cmpl` (an alias)."""
    key = "n_cmpl" if body.has("n_cmpl") else "n"
    return body.int(key, 1, minimum=1)


def check_choice_count(n_prompts: int, n: int, cap: int) -> None:
    """Prompts x completions per prompt is bounded: each is a generation on a slot."""
    if n_prompts * n > cap:
        raise bad_request(f"too many completions in one request: {n_prompts} prompt(s) x n={n} is "
                          f"{n_prompts * n}, the most is {cap}")


def _is_mixed(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value))


def prompt_list(value: Any) -> list[list[str | int]]:
    """Native / OpenAI `prompt` as llama-server reads it: a string, token ids or a mixed array of both is
    one prompt; an array of strings, or of such arrays, is one prompt each (multi-prompt)."""
    if isinstance(value, list) and value and not any(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in value):
        if not all(isinstance(v, list | str | dict) for v in value):
            raise bad_request("'prompt' must be a string, an array of token ids, or a mixed array of both")
        return [prompt_pieces(v) for v in value]
    return [prompt_pieces(value)]


def _content_text(parts: Any) -> str:
    """A prompt object's `content`: an array of parts, its text parts joined (llama-server's multimodal prompt)."""
    if not isinstance(parts, list) or not parts:
        raise bad_request("a prompt's 'content' must be a non-empty array of content parts")
    out = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            out.append(part["text"])
        elif kind in ("image_url", "input_audio", "image", "audio"):
            raise ApiError(501, "multimodal input is not supported by this server")
        else:
            raise bad_request(f"unsupported content part {kind!r} in a prompt's 'content'")
    return "".join(out)


def prompt_pieces(value: Any) -> list[str | int]:
    """A native prompt: a string, token ids, or a mixed array of both (one prompt only)."""
    if isinstance(value, dict):
        if value.get("multimodal_data"):
            raise ApiError(501, "multimodal input is not supported by this server")
        value = _content_text(value["content"]) if "content" in value else value.get("prompt_string")
    if isinstance(value, str):
        return [value]
    if _is_mixed(value):
        return value
    raise bad_request("'prompt' must be a string, an array of token ids, or a mixed array of both (or an "
                      "array of such prompts)")


def request_args(ctx: ServerContext, body: Body, tokens: list[int]) -> GenArgs:
    """A request's GenArgs under the server's settings (sampling defaults, -n, --keep, drafts, LoRA scales)."""
    s = ctx.settings
    args = common_args(body, tokens, ctx.settings.sampling, ctx.tokenizer.n_vocab,
                       lambda text: ctx.tokenizer.encode(text, False, True), s.n_predict, s.ignore_eos, s.keep,
                       s.cache_reuse)
    args.draft = draft_params(body, s.draft)
    if body.has("lora"):
        value = body._raw("lora", None)
        if not isinstance(value, list):
            raise bad_request("'lora' must be an array of objects with 'id' and 'scale' fields")
        entries = lora_entries(value)
        args.lora_entries = entries
        if entries and ctx.lora is not None:  # an empty list: the server's scales, as llama-server
            args.lora = ctx.lora.request_scales(entries)
    if args.sampling.dry_on:
        args.sampling.dry_breakers = breaker_sequences(ctx.tokenizer, args.sampling.dry_sequence_breakers)
    if args.ignore_eos:  # as llama-server: the end-of-generation tokens banned by a -inf logit bias
        args.sampling.logit_bias.update(dict.fromkeys(sorted(ctx.tokenizer.eog_ids), -math.inf))
    if args.id_slot >= s.n_slots:
        raise bad_request(f"'id_slot' must be below the number of slots ({s.n_slots})")
    return args
