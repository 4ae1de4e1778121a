"""The server's settings, declared once; `llamacpy server`'s flags are built from these fields.

Flags keep llama-server's names. The model, thread, context and sampling flags are shared with the other
subcommands (cli/options.py) and land in the fields without flag metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..catalog import DEFAULT_MODEL
from ..engine.speculative import DraftParams
from ..gguf import GGMLType
from ..ops.kv_quant import cache_type
from ..sampling import SamplingParams
from .gate import Cors
from .gcp import GcpCompat
from .reasoning import FORMATS
from .streams import StreamLimits

AUTO_SLOTS = 4  # -np -1 (auto), as llama-server
log = logging.getLogger(__name__)
ROUTER_SECRET_ENV = "LLAMACPY_ROUTER_SECRET"  # a router gives its child servers their secret in this variable


def _flag(*flags: str, help: str, metavar: str | None = None, choices: tuple[str, ...] | None = None,
          negatable: bool = False, action: type[argparse.Action] | None = None) -> dict:
    """Field metadata: the field gets a command-line flag (`negatable`: a boolean off by default that also has
    --no-X, as llama-server's; `action`: an argparse action of its own)."""
    return {"flags": flags, "help": help, "metavar": metavar, "choices": choices, "negatable": negatable,
            "action": action}


class _Lora(argparse.Action):
    """--lora FNAME[,FNAME...] (scale 1) and --lora-scaled FNAME:SCALE[,...], appended in command-line order
    (an adapter's id is its place)."""

    def __call__(self, parser, namespace, values, option_string=None):
        adapters = list(getattr(namespace, self.dest) or [])
        for item in _comma_list(values):
            if option_string == "--lora":
                adapters.append((item, 1.0))
                continue
            path, sep, scale = item.rpartition(":")
            try:
                adapters.append((path, float(scale)))
                if not sep or not path:
                    raise ValueError
            except ValueError:
                parser.error(f"{option_string}: expected FNAME:SCALE, got {item!r}")
        setattr(namespace, self.dest, adapters)


class _Switch(argparse.BooleanOptionalAction):
    """--X / --no-X, and llama.cpp's single-dash negations (-no-ag) given to it as other names."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.lstrip("-").startswith("no-"))


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass
class ServerSettings:
    # shared with the other subcommands (flags in cli/options.py)
    model: str = DEFAULT_MODEL
    threads: int | None = None
    ctx_size: int = 4096
    batch_size: int = 512
    cache_types: tuple[GGMLType, GGMLType] = (GGMLType.F16, GGMLType.F16)  # -ctk, -ctv
    sampling: SamplingParams = field(default_factory=SamplingParams)
    ignore_eos: bool = False
    # speculative decoding (cli/options.py add_draft): -md, --draft-max/min/p-min, -cd, -td
    model_draft: str | None = None
    draft: DraftParams = field(default_factory=DraftParams)
    ctx_size_draft: int = 0
    threads_draft: int | None = None
    cache_types_draft: tuple[GGMLType, GGMLType] = (GGMLType.F16, GGMLType.F16)  # -ctkd, -ctvd
    # the server's own
    host: str = field(default="127.0.0.1", metadata=_flag("--host", help="address to listen on (default: 127.0.0.1)"))
    port: int = field(default=8080, metadata=_flag("--port", help="port to listen on (default: 8080; 0 = any free)"))
    parallel: int = field(default=-1, metadata=_flag(
        "-np", "--parallel", metavar="N",
        help=f"number of slots: requests served at once, the context split among them (default: -1 = auto = "
             f"{AUTO_SLOTS})"))
    kv_unified: bool | None = field(default=None, metadata=_flag(
        "-kvu", "--kv-unified", negatable=True,
        help="one KV cache of -c tokens shared by all slots, each may use all of it (default: on when -np is "
             "auto, else each slot gets -c / -np)"))
    n_predict: int = field(default=-1, metadata=_flag(
        "-n", "--n-predict", metavar="N", help="most tokens a request may generate (default: -1 = no limit)"))
    context_shift: bool = field(default=False, metadata=_flag(
        "--context-shift", negatable=True,
        help="when a reply fills its slot's context, drop the older half of what follows the --keep tokens and go "
             "on (default: off, the reply ends there)"))
    keep: int = field(default=0, metadata=_flag(
        "--keep", metavar="N",
        help="context shift: prompt tokens always kept, besides BOS (default: 0; -1 = the whole prompt; a "
             "request's n_keep wins)"))
    lora: list[tuple[str, float]] = field(default_factory=list, metadata=_flag(
        "--lora", "--lora-scaled", metavar="FNAME[:SCALE]", action=_Lora,
        help="LoRA adapters in GGUF: --lora FNAME (scale 1), --lora-scaled FNAME:SCALE; comma-separated or "
             "repeated, numbered in order (requests choose with \"lora\": [{\"id\": 0, \"scale\": 0.5}])"))
    lora_init_without_apply: bool = field(default=False, metadata=_flag(
        "--lora-init-without-apply",
        help="load the LoRA adapters at scale 0; POST /lora-adapters sets their scales (default: off)"))
    verbose: bool = field(default=False, metadata=_flag(
        "-v", "--verbose", "--log-verbose", help="log everything, debug messages too (as -lv 4)"))
    log_verbosity: int = field(default=3, metadata=_flag(
        "-lv", "--verbosity", "--log-verbosity", metavar="N",
        help="log messages up to this level: 0 output, 1 errors, 2 warnings, 3 info, 4 debug (default: 3)"))
    cache_ram: int = field(default=8192, metadata=_flag(
        "-cram", "--cache-ram", metavar="N",
        help="the RAM prompt cache in MiB: slots' prompts kept when their cells are needed, restored for a later "
             "prompt sharing more with them (default: 8192; -1 = no limit, 0 = off)"))
    cache_idle_slots: bool = field(default=True, metadata=_flag(
        "--cache-idle-slots", negatable=True,
        help="on each new request, save the idle slots to the prompt cache, and clear them when the KV cache is "
             "unified (default: on, needs --cache-ram)"))
    cache_reuse: int = field(default=0, metadata=_flag(
        "--cache-reuse", metavar="N",
        help="reuse runs of at least N cached tokens found later in a new prompt by moving their cells into place "
             "(keys re-rotated) instead of evaluating them again (default: 0 = off; a request's n_cache_reuse "
             "wins)"))
    api_key: list[str] = field(default_factory=list, metadata=_flag(
        "--api-key", metavar="KEY[,KEY...]", help="API keys; requests must send one (Authorization: Bearer KEY)"))
    api_key_file: str | None = field(default=None, metadata=_flag(
        "--api-key-file", metavar="FNAME", help="file with API keys, one per line"))
    alias: list[str] = field(default_factory=list, metadata=_flag(
        "-a", "--alias", metavar="NAME[,NAME...]", help="model name(s) reported by the API (default: the -m argument)"))
    chat_template: str | None = field(default=None, metadata=_flag(
        "--chat-template", metavar="NAME|JINJA", help="built-in template name or Jinja source (default: the model's)"))
    chat_template_kwargs: str | None = field(default=None, metadata=_flag(
        "--chat-template-kwargs", metavar="JSON",
        help="extra template variables for every request, a JSON object, e.g. '{\"enable_thinking\": false}' "
             "(a request's own chat_template_kwargs win)"))
    jinja: bool = field(default=True, metadata=_flag(
        "--jinja", help="llama-server's switch for Jinja templates: --no-jinja refuses tools as llama-server does; "
                        "templates are rendered with Jinja either way (default: on)"))
    reasoning_format: str = field(default="auto", metadata=_flag(
        "--reasoning-format", choices=FORMATS,
        help="thinking models: none leaves thoughts in content; deepseek/auto put them in reasoning_content; "
             "deepseek-legacy does both (default: auto; a request's reasoning_format wins)"))
    reasoning: str = field(default="auto", metadata=_flag(
        "-rea", "--reasoning", choices=("on", "off", "auto"),
        help="thinking on/off through the template's enable_thinking (default: auto = the template's default)"))
    reasoning_budget: int = field(default=-1, metadata=_flag(
        "--reasoning-budget", metavar="N", help="-1: thinking unrestricted; 0: no thinking (default: -1)"))
    tags: list[str] = field(default_factory=list, metadata=_flag(
        "--tags", metavar="TAG[,TAG...]", help="model tags reported by /v1/models"))
    ssl_key_file: str | None = field(default=None, metadata=_flag(
        "--ssl-key-file", metavar="FNAME", help="PEM private key: serve HTTPS (with --ssl-cert-file)"))
    ssl_cert_file: str | None = field(default=None, metadata=_flag(
        "--ssl-cert-file", metavar="FNAME", help="PEM certificate: serve HTTPS (with --ssl-key-file)"))
    chat_template_file: str | None = field(default=None, metadata=_flag(
        "--chat-template-file", metavar="FNAME", help="read the chat template from a file"))
    timeout: int = field(default=3600, metadata=_flag(
        "-to", "--timeout", metavar="N", help="seconds an idle keep-alive connection stays open (default: 3600)"))
    sse_ping_interval: float = field(default=30.0, metadata=_flag(
        "--sse-ping-interval", metavar="N",
        help="seconds of silence before a stream sends a keep-alive comment (default: 30; -1 = never)"))
    cors_origins: str | None = field(default=None, metadata=_flag(
        "--cors-origins", metavar="ORIGINS",
        help="allowed CORS origins, comma separated; 'localhost': only localhost origins (default: *, or "
             "localhost when tools for agents or MCP servers are on)"))
    cors_methods: str = field(default="GET, POST, DELETE, OPTIONS", metadata=_flag(
        "--cors-methods", metavar="METHODS", help="allowed CORS methods (default: GET, POST, DELETE, OPTIONS)"))
    cors_headers: str = field(default="*", metadata=_flag(
        "--cors-headers", metavar="HEADERS", help="allowed CORS headers (default: *)"))
    cors_credentials: bool = field(default=True, metadata=_flag(
        "--cors-credentials", help="allow credentials; with --cors-origins * the Origin is echoed (default: on)"))
    metrics: bool = field(default=False, metadata=_flag("--metrics", help="enable the Prometheus /metrics endpoint"))
    slots: bool = field(default=True, metadata=_flag("--slots", help="enable the /slots endpoint (default: on)"))
    webui: bool = field(default=True, metadata=_flag("--webui", "--ui", help="serve the web page at / (default: on)"))
    stream_buffer_size: int = field(default=4 << 20, metadata=_flag(
        "--stream-buffer-size", metavar="BYTES",
        help="resumable streams (X-Conversation-Id): bytes kept per stream, the oldest dropped first "
             "(default: 4 MiB)"))
    stream_ttl: float = field(default=300.0, metadata=_flag(
        "--stream-ttl", metavar="SECONDS",
        help="resumable streams: how long a finished stream stays replayable (default: 300)"))
    stream_max_sessions: int = field(default=128, metadata=_flag(
        "--stream-max-sessions", metavar="N",
        help="resumable streams held at once; finished ones give way first, then new ones get 503 (default: 128)"))
    slot_save_path: str | None = field(default=None, metadata=_flag(
        "--slot-save-path", metavar="PATH",
        help="folder of slot files: POST /slots/{id}?action=save|restore|erase (default: none, the action is 501)"))
    sleep_idle_seconds: int = field(default=-1, metadata=_flag(
        "--sleep-idle-seconds", metavar="SECONDS",
        help="release the model (its memory map, KV cache, repacked weights) after this long without a request; "
             "the next one loads it again (default: -1 = never)"))
    # tools for agents (server/toolbox): experimental in llama-server, off by default
    tools: list[str] = field(default_factory=list, metadata=_flag(
        "--tools", metavar="TOOL1,TOOL2,...",
        help="experimental: built-in tools for AI agents at /tools - do not enable in untrusted environments; "
             "'all' or some of read_file, file_glob_search, grep_search, exec_shell_command, write_file, "
             "edit_file, get_info (default: no tools)"))
    tools_runtime: str | None = field(default=None, metadata=_flag(
        "--tools-runtime", metavar="OPTION",
        help="experimental: run the tools in 'docker:<image>' / 'podman:<image>' (a container spawned here, "
             "removed at exit), 'docker-container:<id>' / 'podman-container:<id>' (an existing one) or "
             "'ssh:<target>' (default: this host)"))
    mcp_servers_config: str | None = field(default=None, metadata=_flag(
        "--mcp-servers-config", metavar="PATH",
        help="experimental: JSON file of MCP servers (Cursor's {\"mcpServers\": ...}) whose tools /tools offers"))
    mcp_servers_json: str | None = field(default=None, metadata=_flag(
        "--mcp-servers-json", metavar="JSON", help="experimental: MCP servers as inline JSON (as the file's)"))
    ui_mcp_proxy: bool = field(default=False, metadata=_flag(
        "--ui-mcp-proxy", "--webui-mcp-proxy", negatable=True,
        help="experimental: the CORS proxy /cors-proxy?url= for the web UI's MCP clients - do not enable in "
             "untrusted environments (default: off)"))
    agent: bool | None = field(default=None, metadata=_flag(
        "-ag", "--agent", negatable=True,
        help="the CORS proxy and all built-in tools (--ui-mcp-proxy --tools all) - do not enable in untrusted "
             "environments (default: off)"))
    # router mode (llamacpy/router): no -m, models from these sources, each served by a child server
    models_dir: str | None = field(default=None, metadata=_flag(
        "--models-dir", metavar="DIR",
        help="router mode: every *.gguf in DIR (and every subfolder holding one) is a model, named after the "
             "file without .gguf (or the folder), chosen by the request's \"model\""))
    models_preset: str | None = field(default=None, metadata=_flag(
        "--models-preset", metavar="FILE.ini",
        help="router mode: per-model arguments, llama-server's preset INI ([*] for all models, a section per "
             "model; keys are flag names without dashes)"))
    models_catalog: bool = field(default=False, metadata=_flag(
        "--models-catalog", help="router mode: also offer every catalog model (pulled on first use)"))
    models_max: int = field(default=4, metadata=_flag(
        "--models-max", metavar="N",
        help="router mode: most models loaded at once; the least recently used is unloaded first (default: 4)"))
    models_autoload: bool = field(default=True, metadata=_flag(
        "--models-autoload", help="router mode: a request for an unloaded model loads it (default: on)"))
    # embeddings (engine/embedding.py): the server embeds instead of generating
    embedding: bool = field(default=False, metadata=_flag(
        "--embedding", "--embeddings",
        help="embeddings server: /v1/embeddings, /embedding and /embeddings; completions answer 501"))
    pooling: str | None = field(default=None, metadata=_flag(
        "--pooling", choices=("none", "mean", "cls", "last", "rank"),
        help="pooling of the embeddings (default: the model's; none for decoders)"))
    embd_normalize: int = field(default=2, metadata=_flag(
        "--embd-normalize", metavar="N",
        help="normalisation of pooled embeddings: -1 none, 0 max-abs int16, 1 taxicab, 2 euclidean, >2 p-norm "
             "(default: 2)"))
    reranking: bool = field(default=False, metadata=_flag(
        "--rerank", "--reranking",
        help="reranking server: /v1/rerank and its aliases (--embeddings --pooling rank; needs a model with a "
             "classification head)"))
    max_body_bytes: int = 16 << 20  # larger request bodies get 413
    router_secret: str | None = None  # set in a router's child (from ROUTER_SECRET_ENV): only the router gets in
    gcp: GcpCompat | None = None  # Vertex AI serving (AIP_MODE=PREDICTION in the environment): server/gcp.py

    @property
    def log_level(self) -> int:
        """llama.cpp's verbosity as a logging level (-v: everything)."""
        n = 4 if self.verbose else self.log_verbosity
        return logging.DEBUG if n >= 4 else logging.INFO if n == 3 else logging.WARNING if n == 2 else logging.ERROR

    @property
    def is_router(self) -> bool:
        return bool(self.models_dir or self.models_preset or self.models_catalog)

    @property
    def unified_kv(self) -> bool:
        return self.kv_unified if self.kv_unified is not None else self.parallel <= 0

    @property
    def n_slots(self) -> int:
        return AUTO_SLOTS if self.parallel <= 0 else self.parallel

    def stream_limits(self) -> StreamLimits:
        return StreamLimits(cap_bytes=self.stream_buffer_size, ttl_s=self.stream_ttl,
                            max_sessions=self.stream_max_sessions)

    @property
    def enabled_tools(self) -> list[str]:
        """--tools, or all of them with --agent (none with --no-agent)."""
        return [] if self.agent is False else ["all"] if self.agent else self.tools

    @property
    def cors_proxy(self) -> bool:
        return bool(self.agent) or (self.ui_mcp_proxy and self.agent is not False)

    def cors(self) -> Cors:
        origins = self.cors_origins
        if origins is None:  # as llama-server: tools a page could call stay with localhost unless asked otherwise
            agentic = self.enabled_tools or self.mcp_servers_config or self.mcp_servers_json
            origins = "localhost" if agentic else "*"
        return Cors(origins, self.cors_methods, self.cors_headers, self.cors_credentials)

    def api_keys(self) -> list[str]:
        keys = list(self.api_key)
        if self.api_key_file:
            keys += [line.strip() for line in Path(self.api_key_file).read_text().splitlines() if line.strip()]
        return keys

    def template_kwargs(self) -> dict:
        """The template variables of every request: --reasoning / --reasoning-budget 0 as enable_thinking, under
        --chat-template-kwargs (a bad one is an error at start)."""
        if self.reasoning_budget > 0:
            raise ValueError(f"--reasoning-budget {self.reasoning_budget}: llamacpy does not support a token budget "
                             "for thinking yet (-1: unrestricted, 0: no thinking)")
        thinking = {} if self.reasoning == "auto" else {"enable_thinking": self.reasoning == "on"}
        if self.reasoning_budget == 0:
            thinking = {"enable_thinking": False}
        if not self.chat_template_kwargs:
            return thinking
        try:
            value = json.loads(self.chat_template_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(f"--chat-template-kwargs: invalid JSON: {e}") from None
        if not isinstance(value, dict):
            raise ValueError("--chat-template-kwargs must be a JSON object")  # noqa: TRY004 - a bad flag value
        return {**thinking, **value}

    def chat_template_source(self) -> str | None:
        if self.chat_template_file:
            return Path(self.chat_template_file).read_text(encoding="utf-8")
        return self.chat_template

    # -- argparse ------------------------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        """Add a flag for every field with flag metadata."""
        g = p.add_argument_group("server")
        for f in fields(cls):
            if "flags" not in f.metadata:
                continue
            default = f.default_factory() if f.default is MISSING else f.default
            kw: dict[str, Any] = {"dest": f.name, "default": default, "help": f.metadata["help"]}
            if f.metadata["metavar"]:
                kw["metavar"] = f.metadata["metavar"]
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
            if f.metadata.get("action"):
                kw["action"] = f.metadata["action"]
            elif isinstance(default, bool) or f.metadata["negatable"]:
                kw["action"] = _Switch if default or f.metadata["negatable"] else "store_true"
            elif isinstance(default, list):
                kw["type"] = _comma_list
            elif default is not None:
                kw["type"] = type(default)
            g.add_argument(*f.metadata["flags"], **kw)

    @classmethod
    def from_args(cls, a: argparse.Namespace, sampling: SamplingParams) -> ServerSettings:
        own = {f.name: getattr(a, f.name) for f in fields(cls) if "flags" in f.metadata}
        gcp = GcpCompat.from_env(os.environ)
        if gcp is not None and gcp.port != own["port"]:
            log.warning("Google Cloud Platform compat: overriding server port %d with AIP_HTTP_PORT %d",
                        own["port"], gcp.port)
            own["port"] = gcp.port
        if own["reranking"]:  # as llama.cpp's --reranking: an embeddings server with rank pooling
            own["embedding"], own["pooling"] = True, "rank"
        return cls(gcp=gcp, model=a.model, threads=a.threads, ctx_size=a.ctx_size, batch_size=a.batch_size,
                   cache_types=(cache_type(a.cache_type_k), cache_type(a.cache_type_v)),
                   cache_types_draft=(cache_type(a.cache_type_k_draft), cache_type(a.cache_type_v_draft)),
                   sampling=sampling, ignore_eos=a.ignore_eos, model_draft=a.model_draft,
                   draft=DraftParams(a.draft_max, a.draft_min, a.draft_p_min), ctx_size_draft=a.ctx_size_draft,
                   threads_draft=a.threads_draft, router_secret=os.environ.pop(ROUTER_SECRET_ENV, None), **own)
