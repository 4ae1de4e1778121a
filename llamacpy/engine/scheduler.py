"""Continuous batching over slots: each step is one `model.forward` over every active slot.

A slot is one KV cache row with its own sampler. Each step, every decoding slot contributes its last
sampled token and slots still reading their prompt contribute a chunk of it (within the n_batch budget,
decoding slots first), so new requests join while others generate. A new request takes the idle slot
whose cached tokens share the longest prefix with its prompt (least recently used on ties) and only
evaluates the rest.

With a draft model (speculative decoding, speculative.py), each decoding slot drafts a few tokens in its own
draft cache and contributes [last sampled token] + draft; the step then gives every row of those segments
its one-row logits (`row_exact`), and the slot samples them in order while they equal the draft. Steps with a
prompt chunk do not draft (a prompt goes through at full batch size); without a draft nothing changes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from ..gguf import GGMLType
from ..kernels.threads import set_active_threads
from ..kernels.weight import VEC_DOT_BATCH
from ..models import DecoderModel, KVCache, Segment
from ..models.lora import LoraSet
from ..sampling import Sampler
from ..sampling.chain import log_softmax
from . import slot_file
from .prompt_cache import PromptCache
from .requests import DoneEvent, EndReason, GenRequest, ProgressEvent, Stats, TokenEvent
from .sequence import Sequence
from .speculative import DraftParams, DraftSetup, ModelDrafter
from .thread_tuner import ThreadTuner

log = logging.getLogger(__name__)
SLOT_PROMPT_SIMILARITY = 0.1  # llama-server's --slot-prompt-similarity default: below it, a slot is taken by LRU


@dataclass
class Counters:
    """Totals since start, for /metrics (names as llama-server's)."""

    prompt_tokens: int = 0          # prompt tokens evaluated
    prompt_tokens_cached: int = 0   # prompt tokens reused from a slot's cache
    prompt_seconds: float = 0.0
    tokens_predicted: int = 0
    predicted_seconds: float = 0.0
    predicted_steps: int = 0        # tokens decoded in generation (a request's first comes with its prompt)
    n_decode: int = 0               # forward calls
    n_busy_slots: int = 0           # summed over forward calls
    n_tokens_max: int = 0           # most tokens held by one slot
    n_drafted: int = 0              # speculative decoding: tokens drafted, and accepted
    n_draft_accepted: int = 0
    n_draft_steps: int = 0          # forward steps that checked a draft


class Slot:
    """One KV cache row; while it serves a request it holds that request's sampler and progress."""

    def __init__(self, model: DecoderModel, cache: KVCache, index: int):
        self.id = index
        self.seq = Sequence(model, cache, seq=index)  # the tokens whose K/V sit in this row
        self.req: GenRequest | None = None
        self.sampler: Sampler | None = None
        self.pending: list[int] = []  # tokens to evaluate next: the rest of the prompt, or the last sample
        self.stats = Stats(id_slot=index)
        self.t_start = self.t_first = 0.0
        self.last_used = 0.0
        # (n, logits after the first n cached tokens) of the last prompt evaluated here. A request for the
        # same prompt samples its first token from these instead of re-evaluating the prompt's last token:
        # the kernels' summation order depends on a batch's row count, and the model amplifies that
        # rounding to tenths of a nat, so a one-row re-evaluation could change a greedy reply.
        self.prompt_logits: tuple[int, np.ndarray] | None = None
        self.lora: tuple[float, ...] = ()  # the LoRA scales its cached K/V were computed with
        self.drafter: ModelDrafter | None = None  # with a draft model: drafts in a cache of its own
        self.draft_params: DraftParams | None = None  # the server's draft limits (a request may set its own)

    @property
    def n_ctx(self) -> int:
        return self.seq.n_ctx

    @property
    def busy(self) -> bool:
        return self.req is not None

    @property
    def prompting(self) -> bool:
        return self.req is not None and self.stats.n_decoded == 0

    def start(self, req: GenRequest, n_vocab: int, now: float) -> np.ndarray | None:
        """Take `req`; returns the logits to sample its first token from when the row already holds its
        whole prompt and those logits (no evaluation needed), else None."""
        n = len(req.prompt)
        common = self.seq.common_prefix(req.prompt) if req.cache_prompt else 0
        if req.cache_prompt and req.n_cache_reuse > 0 and common < min(n, len(self.seq.tokens)):
            if self.prompt_logits is not None and self.prompt_logits[0] > common:
                self.prompt_logits = None  # the cells after the common prefix are about to move
            common = self.seq.reuse_chunks(req.prompt, common, req.n_cache_reuse)
        reuse = common == n and self.prompt_logits is not None and self.prompt_logits[0] == n
        keep = n if reuse else min(common, n - 1)
        self.seq.reset(keep)
        if self.prompt_logits is not None and self.prompt_logits[0] > keep:
            self.prompt_logits = None
        self.req, self.pending = req, list(req.prompt[keep:])
        self.stats = Stats(id_slot=self.id, n_prompt=n, n_cached=keep)
        self.t_start = now
        constraint = req.grammar.constraint() if req.grammar is not None else None
        self.sampler = Sampler(req.sampling, n_vocab, constraint)
        for t in req.prompt:
            self.sampler.accept(t)
        if self.drafter is not None:
            self.drafter.params = req.draft or self.draft_params
        return self.prompt_logits[1] if reuse else None

    def clear(self) -> None:
        """Drop the cached tokens (and, in a lazily mapped cache, give their pages back)."""
        self.seq.reset(0)
        self.prompt_logits = None
        self.seq.cache.release(self.id)

    def release(self, now: float) -> GenRequest:
        req, self.req, self.sampler, self.pending = self.req, None, None, []
        self.last_used = now
        return req


class Scheduler:
    """Slots over one model and cache; `step()` advances every active request by one forward call.

    Not thread-safe: the engine thread owns it. Events go to each request's sink.
    """

    def __init__(self, model: DecoderModel, n_slots: int, n_ctx_slot: int, n_batch: int, eog_ids: set[int],
                 tuner: ThreadTuner | None = None, draft: DraftSetup | None = None, pool: int | None = None,
                 context_shift: bool = False, add_bos: bool = False,
                 cache_types: tuple[GGMLType, GGMLType] = (GGMLType.F16, GGMLType.F16), lora: LoraSet | None = None,
                 prompt_cache: PromptCache | None = None, cache_idle_slots: bool = True):
        if n_batch < n_slots:
            raise ValueError(f"n_batch ({n_batch}) must be at least the number of slots ({n_slots})")
        self.model, self.n_batch, self.eog_ids = model, n_batch, set(eog_ids)
        self.n_vocab = model.args.n_vocab
        # llama-server's --context-shift: a generating slot whose context fills drops tokens after its first
        # n_keep (+ BOS when the model adds one) instead of ending; off: the reply ends there, truncated
        self.context_shift, self.add_bos = context_shift, add_bos
        # LoRA adapters: each slot's cache was computed with some scales; a step takes only slots of one set of
        # scales (llama-server's can_batch_with), applied to the model just before the forward
        self.lora = lora
        # llama-server's --cache-ram: prompts about to be overwritten go to RAM, and come back for a prompt that
        # shares more with them; --cache-idle-slots: on each new request the idle slots are saved there too (and,
        # in a unified cache, cleared: their cells are free for the others)
        self.prompt_cache, self.cache_idle_slots = prompt_cache, cache_idle_slots and prompt_cache is not None
        if self.cache_idle_slots:  # llama-server's debug line, which its test suite looks for
            log.debug("idle slots will be saved to the prompt cache%s upon starting a new task "
                      "(__TEST_TAG_CACHE_IDLE_SLOTS_ENABLED__)", " and cleared" if pool is not None else "")
        # a unified KV cache (`pool` cells shared by the slots, llama-server's --kv-unified): every slot may hold
        # up to n_ctx_slot tokens, all together at most `pool`; the memory follows the tokens held
        self.pool = pool
        self.cache = model.new_cache(n_ctx_slot, n_slots, pool is not None, *cache_types)
        if pool is None:
            for a in self.cache.k + self.cache.v:
                a.fill(0)  # commit the pages now (as llama.cpp clears its buffer): memory does not grow with use
        self.slots = [Slot(model, self.cache, i) for i in range(n_slots)]
        self.waiting: deque[GenRequest] = deque()
        self.counters = Counters()
        self.tuner = tuner  # picks the kernel threads of each step (thread_tuner.py); None: fixed
        self.drafting = draft is not None
        self.draft_tuner: ThreadTuner | None = None
        if draft is not None:
            if tuner is not None and draft.n_threads is None:
                self.draft_tuner = ThreadTuner(tuner.n_max)
            for slot in self.slots:
                slot.drafter = ModelDrafter(draft.model, draft.n_ctx_slot, replace(draft.params), self.n_vocab,
                                            draft.n_threads, self.draft_tuner, n_batch, draft.cache_types)
                slot.draft_params = draft.params

    # -- queue -------------------------------------------------------------------------------------------

    def add(self, req: GenRequest) -> None:
        problem = self._check(req)
        if problem:
            req.sink(DoneEvent(EndReason.ERROR, Stats(n_prompt=len(req.prompt)), problem))
        else:
            self.waiting.append(req)

    def _check(self, req: GenRequest) -> str:
        n_ctx = self.slots[0].n_ctx
        if not req.prompt:
            return "empty prompt"
        if len(req.prompt) >= n_ctx:
            return f"prompt of {len(req.prompt)} tokens does not fit the slot context of {n_ctx}"
        if min(req.prompt) < 0 or max(req.prompt) >= self.n_vocab:
            return f"prompt token ids must be in [0, {self.n_vocab})"
        if req.id_slot >= len(self.slots):
            return f"no slot {req.id_slot} (the server has {len(self.slots)})"
        return ""

    def cancel(self, request_id: int, reason: EndReason = EndReason.CANCELLED, message: str = "") -> None:
        for slot in self.slots:
            if slot.req is not None and slot.req.id == request_id:
                self._finish(slot, reason, message)
                return
        for req in self.waiting:
            if req.id == request_id:
                self.waiting.remove(req)
                req.sink(DoneEvent(reason, Stats(n_prompt=len(req.prompt)), message))
                return

    # -- a slot's state in a file (on an idle slot: llama-server's /slots/{id}?action=) ----------------------

    def save_slot(self, index: int, path: str) -> tuple[int, int]:
        """(tokens saved, bytes written)."""
        slot = self.slots[index]
        return len(slot.seq.tokens), slot_file.save(path, self.model, self.cache, index, slot.seq.tokens)

    def restore_slot(self, index: int, path: str) -> tuple[int, int]:
        """(tokens restored, bytes read); the slot's cache is empty if the file could not be used."""
        slot = self.slots[index]
        slot.clear()
        room = slot.n_ctx if self.pool is None else min(slot.n_ctx, self.pool_free())
        tokens, n_read = slot_file.load(path, self.model, self.cache, index, room)
        slot.seq.tokens.extend(tokens)
        return len(tokens), n_read

    def erase_slot(self, index: int) -> int:
        n = len(self.slots[index].seq.tokens)
        self.slots[index].clear()
        return n

    def cancel_all(self, reason: EndReason, message: str = "") -> None:
        for slot in self.slots:
            if slot.busy:
                self._finish(slot, reason, message)
        while self.waiting:
            req = self.waiting.popleft()
            req.sink(DoneEvent(reason, Stats(n_prompt=len(req.prompt)), message))

    @property
    def has_work(self) -> bool:
        return bool(self.waiting) or any(s.busy for s in self.slots)

    # -- one step ----------------------------------------------------------------------------------------

    def step(self) -> int:
        """Admit waiting requests, run one forward over all active slots, sample; returns tokens evaluated."""
        self._admit(time.perf_counter())
        plan = self._plan()
        if self.pool is not None:
            plan = self._fit_pool(plan)
        if not plan:
            return 0
        if self.drafting and self._draft(plan):
            return self._step_drafted(plan)
        tokens = [t for _, chunk in plan for t in chunk]
        segments = [Segment(slot.id, len(slot.seq.tokens), len(chunk)) for slot, chunk in plan]
        if self.tuner is not None:
            self.tuner.threads_for_next_step()
        t0 = time.perf_counter()
        try:
            logits = self.model.forward(np.asarray(tokens), segments, self.cache)  # (len(plan), n_vocab)
        except Exception as e:  # noqa: BLE001 - fail these requests, keep serving the others
            for slot, _ in plan:
                slot.seq.reset(0)  # the row's contents are unknown now
                self._finish(slot, EndReason.ERROR, f"{type(e).__name__}: {e}")
            return 0
        now = time.perf_counter()
        if self.tuner is not None:
            self.tuner.record(now - t0, len(tokens), decode_only=len(tokens) == len(plan))
        self._count(plan, now - t0)
        for (slot, chunk), row in zip(plan, logits):
            slot.seq.tokens.extend(chunk)
            del slot.pending[:len(chunk)]
            if slot.prompting and slot.req.return_progress:
                self._progress(slot, now)
            if not slot.pending:
                if slot.prompting:
                    slot.prompt_logits = (len(slot.seq.tokens), row.copy())
                self._sample(slot, row, now)
        return len(tokens)

    def _draft(self, plan: list[tuple[Slot, list[int]]]) -> bool:
        """Extend each decoding slot's chunk with its draft (none while a prompt is evaluated); whether any
        slot drafted. All the rows fit one row-exact step (VEC_DOT_BATCH)."""
        if any(slot.prompting for slot, _ in plan):
            return False
        rows_left = VEC_DOT_BATCH - len(plan)
        drafted = False
        pool_left = self.pool_free() - len(plan) if self.pool is not None else VEC_DOT_BATCH
        for slot, chunk in plan:
            budget = min(rows_left, pool_left, slot.n_ctx - len(slot.seq.tokens) - 2)
            if slot.req.n_predict >= 0:
                budget = min(budget, slot.req.n_predict - slot.stats.n_decoded - 1)
            try:
                draft = slot.drafter.draft(slot.seq.tokens + chunk, budget) if budget > 0 else []
            except Exception:  # noqa: BLE001 - a draft only saves time: decode this slot without one
                slot.drafter.seq.reset(0)
                draft = []
            chunk += draft
            rows_left -= len(draft)
            pool_left -= len(draft)
            slot.stats.n_drafted += len(draft)
            self.counters.n_drafted += len(draft)
            self.counters.n_draft_steps += bool(draft)
            drafted = drafted or bool(draft)
        return drafted

    def _step_drafted(self, plan: list[tuple[Slot, list[int]]]) -> int:
        """One forward over [last token] + draft of every decoding slot, logits at every row, one-row bits
        for each; each slot samples its rows in order while the draft holds."""
        tokens = [t for _, chunk in plan for t in chunk]
        segments = [Segment(slot.id, len(slot.seq.tokens), len(chunk)) for slot, chunk in plan]
        # the draft's tuner measured the machine just now: the check runs on its choice (as generate.py's);
        # the target's tuner gets no samples from these steps (their shapes vary), so its choice may be stale
        if self.tuner is not None and self.draft_tuner is None:
            set_active_threads(self.tuner.choice)
        t0 = time.perf_counter()
        try:
            logits = self.model.forward(np.asarray(tokens), segments, self.cache, np.arange(len(tokens)),
                                        row_exact=True)  # (len(tokens), n_vocab)
        except Exception as e:  # noqa: BLE001 - fail these requests, keep serving the others
            for slot, _ in plan:
                slot.seq.reset(0)
                self._finish(slot, EndReason.ERROR, f"{type(e).__name__}: {e}")
            return 0
        now = time.perf_counter()
        self._count(plan, now - t0)
        start = 0
        for slot, chunk in plan:
            slot.pending = []
            for i, row in enumerate(logits[start:start + len(chunk)]):
                slot.seq.tokens.append(chunk[i])  # the last token, then each accepted draft token
                drafted = chunk[i + 1] if i + 1 < len(chunk) else -1
                self._sample(slot, row, now, drafted)
                if not slot.busy or slot.pending != [drafted]:
                    break  # the cache rows past the accepted tokens are overwritten by the next step
            start += len(chunk)
        return len(tokens)

    def _sample(self, slot: Slot, logits: np.ndarray, now: float, drafted: int = -1) -> None:
        try:
            self._sample_unguarded(slot, logits, now, drafted)
        except Exception as e:  # noqa: BLE001 - e.g. parameters the sampler cannot honour: fail this one only
            if slot.busy:
                self._finish(slot, EndReason.ERROR, f"sampling failed: {type(e).__name__}: {e}")

    def _admit(self, now: float) -> None:
        for req in list(self.waiting):
            idle = [s for s in self.slots if not s.busy and req.id_slot in (-1, s.id)]
            if not idle:
                continue
            best = max(idle, key=lambda s: (s.seq.common_prefix(req.prompt) if req.cache_prompt else 0,
                                            -s.last_used))
            self.waiting.remove(req)
            scales = best.lora if self.lora is None else req.lora if req.lora is not None else self.lora.scales
            update = self.prompt_cache is not None and self._loses_context(best, req)
            if update:
                log.debug("updating prompt cache")
                self.prompt_cache.save(self.cache, best.id, best.seq.tokens, best.lora, best.prompt_logits)
            if best.lora != scales:  # its cache was computed with other adapters: of no use now
                best.clear()
                best.lora = scales
            if update:
                self._restore_prompt(best, req.prompt)
            try:
                logits = best.start(req, self.n_vocab, now)
                self.counters.prompt_tokens_cached += best.stats.n_cached
            except Exception as e:  # noqa: BLE001 - e.g. a grammar llguidance refuses: fail this one only
                self._finish(best, EndReason.ERROR, f"{type(e).__name__}: {e}")
                continue
            if req.return_progress:
                self._progress(best, now, started=True)
            if self.cache_idle_slots:
                self._cache_idle_slots()
            if logits is not None:
                self._sample(best, logits, now)

    @staticmethod
    def _loses_context(slot: Slot, req: GenRequest) -> bool:
        """Whether taking `req` costs `slot` most of what it holds (llama-server's get_available_slot: a slot
        chosen by least recent use, or sharing less than half of its tokens): then they go to the prompt cache."""
        held = slot.seq.tokens
        lcp = slot.seq.common_prefix(req.prompt) if req.cache_prompt else 0
        return lcp <= SLOT_PROMPT_SIMILARITY * len(req.prompt) or (bool(held) and lcp < 0.5 * len(held))

    def _restore_prompt(self, slot: Slot, prompt: list[int]) -> None:
        best = self.prompt_cache.best(slot.seq.tokens, prompt, slot.lora)
        if best is None:
            return
        if self.pool is not None and len(best.tokens) - len(slot.seq.tokens) > self.pool_free():
            return  # no room in the unified cache for it
        self.prompt_cache.take(best, self.cache, slot.id)
        slot.seq.tokens = list(best.tokens)
        slot.prompt_logits = best.logits

    def _cache_idle_slots(self) -> None:
        for slot in self.slots:
            if slot.busy or not slot.seq.tokens:
                continue
            if self.prompt_cache.save(self.cache, slot.id, slot.seq.tokens, slot.lora, slot.prompt_logits):
                log.debug("slot %d: __TEST_TAG_CACHE_IDLE_SLOT__ (saved to the prompt cache)", slot.id)
            if self.pool is not None:  # llama-server's [TAG_IDLE_SLOT_CLEAR]: its cells go back to the pool
                slot.clear()

    @staticmethod
    def _progress(slot: Slot, now: float, started: bool = False) -> None:
        st = slot.stats
        processed = len(slot.seq.tokens)
        elapsed_ms = 0.0 if started else (now - slot.t_start) * 1e3
        stats = replace(st, n_prompt=processed, t_prompt_ms=elapsed_ms)
        slot.req.sink(ProgressEvent(st.n_prompt, st.n_cached, processed, int(elapsed_ms), stats))

    def _plan(self) -> list[tuple[Slot, list[int]]]:
        """(slot, tokens to evaluate) for this step: decoding slots first, then prompt chunks."""
        decoding = [s for s in self.slots if s.busy and not s.prompting]
        prompting = sorted((s for s in self.slots if s.prompting), key=lambda s: s.t_start)
        if self.lora is not None and (decoding or prompting):  # one set of adapter scales per step
            first = (decoding or prompting)[0].lora
            decoding = [s for s in decoding if s.lora == first]
            prompting = [s for s in prompting if s.lora == first]
            self.lora.use(first)
        plan = [(s, s.pending[:1]) for s in decoding]
        budget = self.n_batch - len(plan)
        for s in prompting:
            if budget <= 0:
                break
            chunk = s.pending[:budget]
            plan.append((s, chunk))
            budget -= len(chunk)
        return plan

    def pool_free(self) -> int:
        """Cells of the unified KV cache no slot holds (idle slots' cached prompts count as held)."""
        return self.pool - sum(len(s.seq.tokens) for s in self.slots)

    def _fit_pool(self, plan: list[tuple[Slot, list[int]]]) -> list[tuple[Slot, list[int]]]:
        """The step's plan within the unified cache, as llama-server fits its batch: idle slots' cached prompts
        are dropped first (least recently used first), then prompt chunks shrink to the room left after the
        decoding rows; when not even those fit, every request in progress fails (the pool is full)."""
        need = sum(len(chunk) for _, chunk in plan)
        idle = sorted((s for s in self.slots if not s.busy and s.seq.tokens), key=lambda s: s.last_used)
        while need > self.pool_free() and idle:
            slot = idle.pop(0)
            if self.prompt_cache is not None:
                self.prompt_cache.save(self.cache, slot.id, slot.seq.tokens, slot.lora, slot.prompt_logits)
            slot.clear()
        free = self.pool_free()
        if need <= free:
            return plan
        n_decoding = sum(1 for slot, _ in plan if not slot.prompting)
        room, out = free - n_decoding, []
        for slot, chunk in plan:  # the room goes to the prompts in the plan's order (oldest first)
            if slot.prompting:
                chunk = chunk[:max(0, room)]
                room -= len(chunk)
            if chunk:
                out.append((slot, chunk))
        if n_decoding > free or not out:
            for slot in self.slots:
                if slot.busy:
                    slot.clear()
                    self._finish(slot, EndReason.ERROR, "Context size has been exceeded.")
            return []
        return out

    def _count(self, plan: list[tuple[Slot, list[int]]], seconds: float) -> None:
        c = self.counters
        n_prompt = sum(len(chunk) for slot, chunk in plan if slot.prompting)
        n_total = sum(len(chunk) for _, chunk in plan)
        c.n_decode += 1
        c.n_busy_slots += len(plan)
        c.prompt_tokens += n_prompt
        c.prompt_seconds += seconds * n_prompt / n_total  # a mixed step's time, split by token count
        c.predicted_seconds += seconds * (n_total - n_prompt) / n_total
        c.predicted_steps += sum(1 for slot, _ in plan if not slot.prompting)
        c.n_tokens_max = max(c.n_tokens_max, *(len(s.seq.tokens) + len(chunk) for s, chunk in plan))

    def _sample_unguarded(self, slot: Slot, logits: np.ndarray, now: float, drafted: int = -1) -> None:
        req, st = slot.req, slot.stats
        if st.n_decoded == 0:
            slot.t_first = now
            st.t_prompt_ms = (now - slot.t_start) * 1e3
            if req.n_predict == 0:
                self._finish(slot, EndReason.LENGTH)
                return
        token = slot.sampler.sample(logits)
        if token == drafted:
            st.n_draft_accepted += 1
            self.counters.n_draft_accepted += 1
        st.n_decoded += 1
        st.t_gen_ms = (now - slot.t_first) * 1e3
        self.counters.tokens_predicted += 1
        event = TokenEvent(token, replace(st))
        if req.logprobs and req.post_sampling_probs:
            event.logprob, event.top = _post_sampling_probs(slot.sampler.candidates(), token, req.n_probs)
        elif req.logprobs:
            event.logprob, event.top = _logprobs(logits, token, req.n_probs)
        req.sink(event)
        if (token in self.eog_ids and not req.ignore_eos) or slot.sampler.constraint_done:
            self._finish(slot, EndReason.EOS)
        elif 0 <= req.n_predict <= st.n_decoded:
            self._finish(slot, EndReason.LENGTH)
        elif len(slot.seq.tokens) + 1 >= slot.n_ctx and not self.context_shift:
            self._finish(slot, EndReason.CONTEXT)
        else:
            if len(slot.seq.tokens) + 1 >= slot.n_ctx:
                self._shift(slot)
            slot.pending = [token]

    def _shift(self, slot: Slot) -> None:
        """llama-server's context shift (server-context.cpp pre_decode): keep the first n_keep tokens (the whole
        prompt for -1; one more for BOS), drop n_discard after them (default half the rest), move the rest down.
        A drafted step never reaches here before its last row (its draft stops 2 cells short of the end)."""
        req, n = slot.req, len(slot.seq.tokens)
        keep = (len(req.prompt) if req.n_keep < 0 else req.n_keep) + int(self.add_bos)
        keep = min(slot.n_ctx - 4, keep)
        left = n - keep
        discard = max(0, min(req.n_discard or left // 2, left - 1))
        log.info("slot %d: context shift, n_keep = %d, n_left = %d, n_discard = %d", slot.id, keep, left, discard)
        slot.seq.shift(keep, discard)
        if slot.drafter is not None:
            slot.drafter.seq.shift(keep, discard)
        slot.prompt_logits = None
        slot.stats.truncated = True

    def _finish(self, slot: Slot, reason: EndReason, message: str = "") -> None:
        st = slot.stats
        req = slot.release(time.perf_counter())
        req.sink(DoneEvent(reason, replace(st), message))


def _post_sampling_probs(last: tuple[np.ndarray, np.ndarray], token: int, n: int) -> tuple[float,
                                                                                           list[tuple[int, float]]]:
    """The token's probability after the sampler chain, and the n most likely of the chain's candidates
    (those it removed have probability 0 and are not listed, as llama-server)."""
    ids, probs = last
    hit = np.flatnonzero(ids == token)
    p = float(probs[hit[0]]) if len(hit) else 0.0
    return p, [(int(i), float(q)) for i, q in zip(ids[:n], probs[:n], strict=True) if q > 0]


def _logprobs(logits: np.ndarray, token: int, n: int) -> tuple[float, list[tuple[int, float]]]:
    """The token's log-probability under the raw logits (llama-server's default), and the n best."""
    lp = log_softmax(logits)
    if n <= 0:
        return float(lp[token]), []
    n = min(n, len(lp))
    best = np.argpartition(-lp, n - 1)[:n]
    best = best[np.argsort(-lp[best], kind="stable")]
    return float(lp[token]), [(int(i), float(lp[i])) for i in best]
