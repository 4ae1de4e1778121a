"""The embedding engine (a server started with --embeddings): one thread owns the model and turns token
sequences into vectors. Token ids in, float32 arrays out; no text, no JSON.

Requests queue up; each step takes every waiting sequence it can fit in one batch of `n_batch` tokens (a
longer sequence runs alone), runs them through the model together (each sequence attends only to itself),
pools and normalizes them, and hands each request its vectors through `done`, on this thread.
It answers the server's questions the generation engine answers (`ready`, `slots`, `counters`...), so
/health, /slots and /metrics work the same.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..ops.pooling import normalize, pool
from .loop import SHUTDOWN_MESSAGE, EngineConfig, ModelThread, SlotInfo, Wake
from .scheduler import Counters
from .thread_tuner import ThreadTuner


@dataclass
class EmbedRequest:
    """Sequences of token ids to embed; `done(vectors, error)` gets one array per sequence: (1, n_embd)
    pooled and normalized with `embd_normalize`, or (n_tokens, n_embd) unnormalized for pooling "none"."""

    prompts: list[list[int]]
    pooling: str
    embd_normalize: float = 2
    done: Callable[[list[np.ndarray] | None, str | None], None] = field(default=lambda v, e: None, repr=False)
    results: list[np.ndarray | None] = field(default_factory=list, repr=False)
    failed: bool = False


class EmbeddingEngine(ModelThread):
    """Owns the model on one thread. `load()` returns (model, _) as for `Engine`."""

    thread_name = "llamacpy-embeddings"

    def __init__(self, load: Callable[[], tuple[object, set[int]]], config: EngineConfig,
                 log: Callable[[str], None] = lambda msg: None, release: Callable[[], None] = lambda: None):
        super().__init__(load, config, log, release)
        self._counters = Counters()
        self.tuner: ThreadTuner | None = None

    # -- API for other threads -----------------------------------------------------------------------------

    def submit(self, req: EmbedRequest) -> None:
        with self._submit_lock:
            if not self._stopping:
                self.tasks.put(req)
                return
        req.done(None, self.error or SHUTDOWN_MESSAGE)

    def stop(self, timeout: float = 5.0) -> None:
        with self._submit_lock:
            self._stopping = True
        self.tasks.put(None)
        self._join(timeout)

    def slots(self) -> list[SlotInfo]:
        c = self.config
        return [SlotInfo(i, c.n_ctx_slot, None, 0, 0) for i in range(c.n_slots)] if self.ready.is_set() else []

    def counters(self) -> Counters:
        return self._counters

    def n_waiting(self) -> int:
        return self.tasks.qsize()

    # -- the thread ------------------------------------------------------------------------------------------

    def _start_up(self, n_threads: int) -> None:
        # threads not given: pick between all and one per batch, as the generation engine does
        self.tuner = ThreadTuner.unless_given(self.config.n_threads, n_threads)
        self.model, _ = self.load()
        self.model.hidden_states(np.zeros(4, np.int64), [1, 3])  # compile or load the kernels

    def _release(self) -> None:
        self.model = None

    def _is_stop(self, task: object) -> bool:
        return task is None

    def _refuse(self, task: EmbedRequest | None, message: str) -> None:
        if isinstance(task, EmbedRequest):
            task.done(None, message)

    def _loop(self) -> None:
        pending: list[EmbedRequest] = []
        while True:
            if not pending:
                pending.append(self._next_task())
            while True:
                try:
                    pending.append(self.tasks.get_nowait())
                except queue.Empty:
                    break
            pending = [r for r in pending if not isinstance(r, Wake)]
            if not pending:
                continue
            if any(r is None for r in pending):
                for r in pending:
                    if r is not None:
                        r.done(None, SHUTDOWN_MESSAGE)
                return
            pending = self._step(pending)

    def _step(self, pending: list[EmbedRequest]) -> list[EmbedRequest]:
        """Embed the next batch of sequences, oldest request first; returns the requests not finished."""
        batch: list[tuple[EmbedRequest, int]] = []
        n_tokens = 0
        for req in pending:
            if not req.results:
                req.results = [None] * len(req.prompts)
            for i, r in enumerate(req.results):
                n = len(req.prompts[i])
                if r is None and (not batch or n_tokens + n <= self.config.n_batch):
                    batch.append((req, i))
                    n_tokens += n
        if self.tuner is not None:
            self.tuner.threads_for_next_step()
        t0 = time.perf_counter()
        try:
            tokens = np.concatenate([req.prompts[i] for req, i in batch]).astype(np.int64)
            hidden = self.model.hidden_states(tokens, [len(req.prompts[i]) for req, i in batch])
            if self.tuner is not None:  # batches vary in length: time per token, compared within a size class
                self.tuner.record((time.perf_counter() - t0) / n_tokens, n_tokens.bit_length(), True)
        except Exception as e:  # noqa: BLE001 - a bad batch fails its requests, not the engine
            for req, _ in batch:
                req.failed = True
            for req in {id(r): r for r, _ in batch}.values():
                req.done(None, f"{type(e).__name__}: {e}")
            return [r for r in pending if not r.failed]
        start = 0
        for req, i in batch:
            n = len(req.prompts[i])
            if req.pooling == "rank":  # the classification head's scores, unnormalized (llama.cpp's rank pooling)
                req.results[i] = self.model.classify(hidden[start:start + n], [n])
                start += n
                continue
            vec = pool(hidden[start:start + n], [n], req.pooling)[0]
            req.results[i] = vec if req.pooling == "none" else normalize(vec, req.embd_normalize)
            start += n
        c = self._counters
        c.prompt_tokens += n_tokens
        c.prompt_seconds += time.perf_counter() - t0
        c.n_decode += 1
        c.n_tokens_max = max(c.n_tokens_max, max(len(req.prompts[i]) for req, i in batch))
        left = []
        for req in pending:
            if all(r is not None for r in req.results):
                req.done(req.results, None)
            else:
                left.append(req)
        return left
