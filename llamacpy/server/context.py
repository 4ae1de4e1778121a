"""The server's shared state: settings, the engine, and the loaded model's tokenizer and template.

The model is loaded on the engine thread after the HTTP server has started (requests get 503 "Loading
model" meanwhile); the tokenizer, template and model facts are published here for the handlers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ..catalog import resolve_model
from ..engine import Engine, EngineConfig
from ..engine.embedding import EmbeddingEngine
from ..engine.scheduler import Counters
from ..engine.speculative import DraftSetup, compatibility_error
from ..gguf import GGUFFile
from ..models import DecoderModel, ModelError, load_model
from ..models.lora import LoraSet, load_adapter
from ..sampling.grammar import Grammar, GrammarVocab
from ..tokenizer import Tokenizer
from ..tokenizer.chat_template import ChatTemplate
from .params import ConstraintSpec
from .settings import ServerSettings
from .streams import StreamManager
from .toolbox import Toolbox

log = logging.getLogger("llamacpy.server")

VOCAB_TYPES = {"spm": 1, "bpe": 2, "wpm": 3, "ugm": 4}  # llama_vocab_type


class ServerContext:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.t_start = int(time.time())  # /metrics' Process-Start-Time-Unix
        self.metrics_scraped = Counters()  # the engine's counters at the last /metrics: its rates' window
        self.api_keys = settings.api_keys()
        self.template_kwargs = settings.template_kwargs()  # --chat-template-kwargs, under each request's own
        # llama-server keeps the aliases in a std::set: the model's name is the first in sorted order
        self.aliases = sorted(set(settings.alias))
        self.model_name = self.aliases[0] if self.aliases else settings.model
        if settings.slot_save_path:
            os.makedirs(settings.slot_save_path, exist_ok=True)
        if settings.sleep_idle_seconds == 0 or settings.sleep_idle_seconds < -1:
            raise ValueError("--sleep-idle-seconds: invalid value: cannot be 0 or less than -1")
        config = EngineConfig(n_slots=settings.n_slots, n_batch=settings.batch_size, n_threads=settings.threads,
                              context_shift=settings.context_shift, cache_types=settings.cache_types,
                              cache_ram_mib=settings.cache_ram, cache_idle_slots=settings.cache_idle_slots,
                              sleep_idle_seconds=settings.sleep_idle_seconds if settings.sleep_idle_seconds > 0
                              else None)
        kind = EmbeddingEngine if settings.embedding else Engine
        self.engine = kind(self._load, config, log.info, release=self._release)
        self.pooling = "none"  # the embeddings' pooling (--pooling, else the model's), set when loaded
        self.rerank_template: str | None = None
        self.path: Path | None = None
        self.draft_path: Path | None = None  # the draft model (-md), when speculative decoding
        self.lora: LoraSet | None = None  # LoRA adapters (--lora), once the model is loaded
        self.lora_scales: tuple[float, ...] = ()  # their server-wide scales (outlive a sleep)
        self.gguf: GGUFFile | None = None
        self.tokenizer: Tokenizer | None = None
        self.template: ChatTemplate | None = None
        self.n_ctx = self.n_ctx_slot = 0
        self.max_piece_bytes = 1  # the longest token, in bytes: prompts of B bytes have >= B / this tokens
        self.model_facts: dict = {}
        self.streams = StreamManager(settings.stream_limits())  # resumable streams (stream_routes.py)
        self.toolbox = Toolbox.start(settings)  # /tools
        self._grammar_vocab: GrammarVocab | None = None  # built on the first constrained request
        self._grammar_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.engine.ready.is_set()

    def _load(self) -> tuple[DecoderModel, set[int]]:
        """Runs on the engine thread: everything the handlers and the engine need from the model file."""
        s = self.settings
        self.path = resolve_model(s.model, log.info)
        log.info("loading model %s", self.path)
        g = GGUFFile(self.path)
        tokenizer = Tokenizer.from_gguf(g)
        model = load_model(g)
        self.pooling = self._pooling(model)
        self.template = self._template(g, tokenizer)
        self.rerank_template = g.get("tokenizer.chat_template.rerank")  # "{query}" / "{document}" placeholders
        n_train = model.args.n_ctx_train
        self.n_ctx = min(s.ctx_size, n_train) if s.ctx_size > 0 else n_train
        # unified: every slot may use the whole context, the slots share it (llama-server's --kv-unified)
        self.n_ctx_slot = self.n_ctx if s.unified_kv else self.n_ctx // s.n_slots
        if self.n_ctx_slot < 8:
            raise ValueError(f"a context of {self.n_ctx} tokens split over {s.n_slots} slots is too small")
        self.engine.config.n_ctx_slot = self.n_ctx_slot  # read by the engine when it builds the cache, next
        self.engine.config.kv_pool = self.n_ctx if s.unified_kv and not s.embedding else None
        self.engine.config.add_bos = tokenizer.add_bos
        self.max_piece_bytes = max(len(tokenizer.token_to_piece(i)) for i in range(tokenizer.n_vocab)) or 1
        tensors = list(g.tensors.values())
        self.model_facts = {
            "arch": model.args.arch, "n_vocab": model.args.n_vocab, "n_ctx_train": n_train,
            "n_embd": model.args.n_embd, "n_params": sum(t.n_elements for t in tensors),
            "size": sum(t.data.nbytes for t in tensors), "vocab_type": VOCAB_TYPES.get(tokenizer.vocab.type, 0),
            "ftype": model.args.file_type,
        }
        if s.model_draft and not s.embedding:
            self.engine.config.draft = self._load_draft(tokenizer)
        self.engine.config.lora = self._load_lora(model)
        self.gguf, self.tokenizer = g, tokenizer
        return model, tokenizer.eog_ids

    def _release(self) -> None:
        """Going to sleep: drop what holds the model's memory (the engine drops the rest); `_load` runs again."""
        self.gguf = None
        self.engine.config.draft = self.engine.config.lora = self.lora = None

    def _load_lora(self, model) -> LoraSet | None:
        """The LoRA adapters (--lora, --lora-scaled), at scale 0 with --lora-init-without-apply. A sleeping server
        waking up keeps the scales POST /lora-adapters set."""
        s = self.settings
        if not s.lora:
            return None
        if s.embedding:
            raise ModelError("LoRA adapters are not supported by an embeddings server here")
        adapters = []
        for path, _ in s.lora:
            adapter = load_adapter(path, model)
            log.info("LoRA adapter %s: %d tensors, alpha %g, %.1f MiB", path, len(adapter.weights), adapter.alpha,
                     adapter.nbytes / 2**20)
            adapters.append(adapter)
        scales = self.lora_scales or tuple(0.0 if s.lora_init_without_apply else scale for _, scale in s.lora)
        self.lora_scales = scales
        self.lora = LoraSet(model, adapters, scales)
        return self.lora

    def set_lora_scales(self, entries: list[tuple[int, float]]) -> None:
        """POST /lora-adapters: the scales of later requests (running ones keep theirs, as in llama-server)."""
        if self.lora is None:
            return
        self.lora_scales = self.lora.request_scales(entries)
        self.lora.scales = self.lora_scales  # read by the engine thread when it admits a request

    def _load_draft(self, tokenizer: Tokenizer) -> DraftSetup:
        """The draft model (-md), refused before its weights load when its vocabulary differs from the model's."""
        s = self.settings
        s.draft.validate()
        self.draft_path = resolve_model(s.model_draft, log.info)
        log.info("loading draft model %s", self.draft_path)
        g = GGUFFile(self.draft_path)
        error = compatibility_error(tokenizer, Tokenizer.from_gguf(g))
        if error:
            raise ModelError(f"the draft model {self.draft_path.name} cannot draft for {self.path.name} (the "
                             f"vocabularies must match): {error}")
        model = load_model(g)
        n_ctx = min(s.ctx_size_draft // s.n_slots if s.ctx_size_draft > 0 else self.n_ctx_slot,
                    model.args.n_ctx_train)
        return DraftSetup(model, s.draft, n_ctx, s.threads_draft, s.cache_types_draft)

    def _pooling(self, model) -> str:
        """The embeddings' pooling; refuses what cannot be served (an encoder without --embeddings, rank)."""
        s = self.settings
        encoder = getattr(model, "is_encoder", False)
        if encoder and not s.embedding:
            raise ModelError(f"{model.args.arch} is an embedding model: start the server with --embeddings")
        if (s.reranking or s.pooling == "rank") and not getattr(model, "has_classifier", False):
            raise ModelError(f"reranking (rank pooling) needs a reranker: {self.path.name} has no classification "
                             "head (cls.weight / cls.output.weight)")
        return s.pooling or (model.args.pooling if encoder else "none")

    def _template(self, g: GGUFFile, tokenizer: Tokenizer) -> ChatTemplate:
        source = self.settings.chat_template_source()
        if not source:
            return ChatTemplate.from_gguf(g)
        if "{" not in source:
            return ChatTemplate.builtin(source)
        bos = tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
        eos = tokenizer.token_text(tokenizer.eos_id) if tokenizer.eos_id is not None else ""
        return ChatTemplate(source, bos, eos)

    def compile_grammar(self, spec: ConstraintSpec) -> Grammar:
        """The request's constraint, checked against this model's vocabulary (ValueError if invalid).
        Blocking: the first call builds llguidance's view of the vocabulary (up to a second)."""
        with self._grammar_lock:
            if self._grammar_vocab is None:
                self._grammar_vocab = GrammarVocab.from_tokenizer(self.tokenizer)
        return self._grammar_vocab.compile(gbnf=spec.gbnf, json_schema=spec.json_schema, lark=spec.lark)

    def token_text(self, which: str) -> str:
        tid = getattr(self.tokenizer, f"{which}_id")
        return self.tokenizer.token_text(tid) if tid is not None else ""

    def template_caps(self) -> dict:
        return asdict(self.template.caps)
