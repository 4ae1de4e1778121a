"""The Python API: `Llama(model).complete(...)`, `.chat(...)`, streaming iterators.

>>> from llamacpy import Llama
>>> llm = Llama("smollm2-135m-instruct")          # a catalog name (pulled on first use) or a .gguf path
>>> llm.complete("The capital of France is", max_tokens=8, temperature=0)
>>> for piece in llm.chat([{"role": "user", "content": "Hi"}], stream=True): print(piece, end="")
>>> llm.create_chat_completion(messages=[...])   # llama-cpp-python's calls and result dicts (oai.py)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator

from ..catalog import resolve_model
from ..engine import GenerationParams, Sequence, StopReason, generate, textembed
from ..engine.speculative import (
    CallableDrafter,
    Drafter,
    DraftParams,
    DraftStats,
    ModelDrafter,
    compatibility_error,
)
from ..engine.textgen import Completion, StopStrings
from ..engine.thread_tuner import ThreadTuner
from ..gguf import GGUFFile
from ..kernels import set_num_threads
from ..models import load_model
from ..ops.kv_quant import cache_type
from ..sampling import Sampler, SamplingParams
from ..sampling.dry import breaker_sequences
from ..sampling.grammar import GrammarVocab
from ..tokenizer import Tokenizer
from ..tokenizer.chat_template import ChatTemplate
from . import oai


class Llama:
    """A loaded model with one sequence of KV cache: tokenize, complete, chat, score."""

    def __init__(self, model: str | os.PathLike | None = None, n_ctx: int = 4096, n_threads: int | None = None,
                 n_batch: int = 512, chat_template: str | None = None,
                 progress: Callable[[str], None] | None = None, *, model_path: str | os.PathLike | None = None,
                 verbose: bool = True, n_gpu_layers: int = 0, embedding: bool = False,
                 pooling_type: int | str | None = None, draft_model: object = None, draft_max: int = 16,
                 draft_min: int = 0, draft_p_min: float = 0.75, n_ctx_draft: int = 0,
                 n_threads_draft: int | None = None, type_k: int | str = "f16", type_v: int | str = "f16",
                 type_k_draft: int | str = "f16", type_v_draft: int | str = "f16"):
        """`model_path`, `verbose` and `n_gpu_layers` (ignored: CPU only) as llama-cpp-python names them.
        `embedding=True` allows `embed` / `create_embedding` (`pooling_type`: none, mean, cls, last or 0-3;
        default the model's); an embedding model (bert) is loaded for embeddings only.

        `draft_model` turns on speculative decoding (the same tokens, faster): a catalog name or .gguf path
        of a small model with the same vocabulary, a loaded `Llama`, or llama-cpp-python's draft interface
        (a callable: token ids so far -> draft ids, e.g. its prompt lookup). `draft_max`, `draft_min`,
        `draft_p_min`, `n_ctx_draft` (0: n_ctx) and `n_threads_draft` (None: as n_threads) are llama.cpp's
        --draft-max, --draft-min, --draft-p-min, -cd and -td. `draft_stats` counts the last generation's
        drafted and accepted tokens. `type_k`, `type_v` (and `type_k_draft`, `type_v_draft`): the KV cache types,
        llama.cpp's -ctk/-ctv (-ctkd/-ctvd): f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, by name or GGML number."""
        cache_types = (cache_type(type_k), cache_type(type_v))
        draft_cache_types = (cache_type(type_k_draft), cache_type(type_v_draft))
        quiet = (lambda msg: None) if not verbose else None
        log = progress or quiet or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.path = resolve_model(model if model is not None else model_path, log)
        threads = set_num_threads(n_threads)  # None: one per physical core
        t0 = time.perf_counter()
        self.gguf = GGUFFile(self.path)
        log(f"llamacpy: loading {self.path.name} ({self.gguf.file_size / 2**20:.1f} MiB, "
            f"{self.gguf.architecture}, {threads} threads)")
        self.tokenizer = Tokenizer.from_gguf(self.gguf)
        self.model = load_model(self.gguf)
        self.embedding, self.n_batch = embedding, n_batch
        self.pooling = textembed.pooling_name(pooling_type, self.model)
        # threads not given: each embedding batch runs on all threads or one, whichever is faster now
        self._embed_tuner = ThreadTuner.unless_given(n_threads, threads)
        if getattr(self.model, "is_encoder", False):  # nothing to generate with: no cache, no template
            self.embedding, self.n_ctx = True, min(n_ctx, self.model.args.n_ctx_train) or self.model.args.n_ctx_train
            self.load_seconds = time.perf_counter() - t0
            log(f"llamacpy: ready in {self.load_seconds:.2f} s (embeddings, {self.pooling} pooling)")
            return
        self.chat_template = self._template(chat_template)
        self.n_ctx = min(n_ctx, self.model.args.n_ctx_train) if n_ctx > 0 else self.model.args.n_ctx_train
        self.cache = self.model.new_cache(self.n_ctx, 1, False, *cache_types)
        # threads not given: each decode step runs on all threads or one, whichever is faster now
        tuner = ThreadTuner.unless_given(n_threads, threads)
        self.sequence = Sequence(self.model, self.cache, n_batch=n_batch, tuner=tuner)
        self._grammar_vocab: GrammarVocab | None = None
        self.draft_stats = DraftStats()
        self.drafter = None if draft_model is None else self._drafter(
            draft_model, DraftParams(draft_max, draft_min, draft_p_min), n_ctx_draft or self.n_ctx, log,
            n_threads_draft, tuner.n_max if tuner is not None else 0, draft_cache_types)
        self.load_seconds = time.perf_counter() - t0
        log(f"llamacpy: ready in {self.load_seconds:.2f} s (context {self.n_ctx}, "
            f"KV cache {self.cache.nbytes / 2**20:.0f} MiB)")

    def _drafter(self, draft_model: object, params: DraftParams, n_ctx: int, log: Callable[[str], None],
                 n_threads: int | None, tuned_threads: int, cache_types: tuple) -> Drafter:
        """`n_threads`: the draft's fixed thread count (None: the target's; tuned when `tuned_threads`)."""
        params.validate()
        if callable(draft_model) and not isinstance(draft_model, Llama):
            return CallableDrafter(draft_model, self.tokenizer.n_vocab, params.n_max)
        if isinstance(draft_model, Llama):
            path, tokenizer, g = draft_model.path, draft_model.tokenizer, None
        else:
            path = resolve_model(draft_model, log)
            g = GGUFFile(path)
            tokenizer = Tokenizer.from_gguf(g)
        error = compatibility_error(self.tokenizer, tokenizer)  # before loading the weights
        if error:
            raise ValueError(f"draft model {path.name} cannot draft for {self.path.name} (the vocabularies must "
                             f"match): {error}")
        model = draft_model.model if g is None else load_model(g)
        n_ctx = min(n_ctx, model.args.n_ctx_train)
        tuner = ThreadTuner.unless_given(n_threads, tuned_threads)
        log(f"llamacpy: draft model {path.name} (context {n_ctx}, up to {params.n_max} tokens per draft)")
        return ModelDrafter(model, n_ctx, params, self.model.args.n_vocab, n_threads, tuner, cache_types=cache_types)

    def _template(self, chat_template: str | None) -> ChatTemplate:
        """The model's template, or a built-in one by name, or a Jinja source given by the user."""
        if not chat_template:
            return ChatTemplate.from_gguf(self.gguf)
        if "{" not in chat_template:
            return ChatTemplate.builtin(chat_template, self._bos_text(), self._eos_text())
        return ChatTemplate(chat_template, self._bos_text(), self._eos_text(),
                            add_bos=self.tokenizer.add_bos, add_eos=self.tokenizer.add_eos)

    def _bos_text(self) -> str:
        return self.tokenizer.token_text(self.tokenizer.bos_id) if self.tokenizer.bos_id is not None else ""

    def _eos_text(self) -> str:
        return self.tokenizer.token_text(self.tokenizer.eos_id) if self.tokenizer.eos_id is not None else ""

    # -- text <-> tokens --------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt)

    # -- generation ---------------------------------------------------------------------------------
    def stream_tokens(self, prompt_tokens: list[int], max_tokens: int = -1, stop: list[str] | None = None,
                      ignore_eos: bool = False, grammar: str | None = None, json_schema: dict | None = None,
                      **sampling) -> Iterator[Completion]:
        """Generate from token ids; yields text pieces (complete UTF-8 only), the last with finish_reason.
        `grammar` (GBNF) or `json_schema` ({} for any JSON) constrains the output; ValueError if invalid."""
        if getattr(self.model, "is_encoder", False):
            raise ValueError(f"{self.path.name} is an embedding model: use embed() or create_embedding()")
        if not prompt_tokens:
            raise ValueError("empty prompt")
        if len(prompt_tokens) >= self.n_ctx:
            raise ValueError(f"prompt of {len(prompt_tokens)} tokens does not fit the context of {self.n_ctx}")
        constraint = None
        if grammar is not None or json_schema is not None:
            constraint = self.grammar_vocab().compile(gbnf=grammar, json_schema=json_schema).constraint()
        params = SamplingParams(**sampling)
        if params.dry_on:
            params.dry_breakers = breaker_sequences(self.tokenizer, params.dry_sequence_breakers)
        sampler = Sampler(params, self.model.args.n_vocab, constraint)
        detok = self.tokenizer.detokenizer(skip_special=True)
        stops = StopStrings(stop)
        self.draft_stats = DraftStats()
        gen = generate(self.sequence, list(prompt_tokens), sampler,
                       GenerationParams(n_predict=max_tokens, ignore_eos=ignore_eos), self.tokenizer.eog_ids,
                       self.drafter, self.draft_stats)
        for step in gen:
            if step.stop == StopReason.EOS:
                yield Completion(stops.flush() + detok.flush(), None, "stop")
                return
            text, stopped = stops.push(detok.feed(step.token))
            if stopped:
                yield Completion(text, step.token, "stop")
                return
            if step.stop is not None:
                tail, _ = stops.push(detok.flush())
                finish = "stop" if step.stop == StopReason.GRAMMAR else "length"
                yield Completion(text + tail + stops.flush(), step.token, finish)
                return
            yield Completion(text, step.token)

    def grammar_vocab(self) -> GrammarVocab:
        """llguidance's view of the vocabulary, built on first use (about a second for 151k tokens)."""
        if self._grammar_vocab is None:
            self._grammar_vocab = GrammarVocab.from_tokenizer(self.tokenizer)
        return self._grammar_vocab

    def complete(self, prompt: str, max_tokens: int = 128, stream: bool = False, **kw) -> str | Iterator[str]:
        """Continue `prompt` (BOS added per the model); returns the text, or an iterator of pieces."""
        tokens = self.tokenize(prompt, add_special=True, parse_special=True)
        pieces = (c.text for c in self.stream_tokens(tokens, max_tokens, **kw))
        return pieces if stream else "".join(pieces)

    def chat(self, messages: list[dict], max_tokens: int = -1, stream: bool = False, **kw) -> str | Iterator[str]:
        """Reply to a conversation rendered with the model's chat template."""
        prompt = self.apply_chat_template(messages)
        tokens = self.tokenizer.encode(prompt, add_special=True, parse_special=True)
        pieces = (c.text for c in self.stream_tokens(tokens, max_tokens, **kw))
        return pieces if stream else "".join(pieces)

    # -- llama-cpp-python's OpenAI-shaped calls (oai.py) -----------------------------------------------
    def create_completion(self, prompt: str, max_tokens: int | None = 16, **kw) -> dict | Iterator[dict]:
        """{"choices": [{"text", "finish_reason"}], "usage": ...}; chunk dicts with stream=True."""
        return oai.create_completion(self, prompt, max_tokens, **kw)

    __call__ = create_completion

    def create_chat_completion(self, messages: list[dict], max_tokens: int | None = None, **kw) -> dict | Iterator[dict]:
        """{"choices": [{"message": {"role", "content"}, "finish_reason"}], "usage": ...}; with stream=True,
        chunk dicts with `delta`. `response_format` json_object / json_schema constrain the reply."""
        return oai.create_chat_completion(self, messages, max_tokens, **kw)

    # -- embeddings (llama-cpp-python's embed / create_embedding) ------------------------------------------
    def embed(self, input: str | list[str], normalize: bool = True, truncate: bool = True,
              return_count: bool = False):
        """Embedding of a text (a list of floats), or of each text of a list; with pooling none, a list of
        per-token vectors each. `normalize`: L2 (pooled only); `truncate`: cut inputs to the context
        (else a longer one is a ValueError); `return_count` adds the number of tokens."""
        if not self.embedding:
            raise RuntimeError("Llama model must be created with embedding=True to call this method")
        texts = [input] if isinstance(input, str) else list(input)
        prompts = [self.tokenize(t, add_special=True, parse_special=False) for t in texts]
        for i, p in enumerate(prompts):
            if len(p) > self.n_ctx:
                if not truncate:
                    raise ValueError(f"input {i} has {len(p)} tokens, more than the context of {self.n_ctx}")
                prompts[i] = p[:self.n_ctx]
            if not prompts[i]:
                raise ValueError(f"input {i} is empty")
        vectors = textembed.embed_tokens(self.model, prompts, self.pooling, 2 if normalize else -1, self.n_batch,
                                         self._embed_tuner)
        out = [v.tolist() for v in vectors]
        result = out[0] if isinstance(input, str) else out
        return (result, sum(map(len, prompts))) if return_count else result

    def create_embedding(self, input: str | list[str], model: str | None = None) -> dict:
        """{"object": "list", "data": [{"object": "embedding", "embedding", "index"}], "model", "usage"}."""
        return oai.create_embedding(self, input, model)

    def eval_logits(self, tokens: list[int]) -> object:
        """Logits (len(tokens), n_vocab) of every position of a fresh sequence."""
        self.sequence.reset()
        return self.sequence.feed(list(tokens), all_logits=True)
