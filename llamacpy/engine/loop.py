"""The engine thread: loads the model, then runs scheduler steps while there is work.

Other threads talk to it through one queue of typed tasks (submit, cancel, stop); results go back through
each request's sink, called on this thread. All model compute happens here, so the numba thread count
is set once, here.
"""

from __future__ import annotations

import gc
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..gguf import GGMLType
from ..kernels import set_num_threads
from ..models import DecoderModel, Segment
from ..models.lora import LoraSet
from . import precompile
from .prompt_cache import PromptCache
from .requests import DoneEvent, EndReason, GenRequest, Stats
from .scheduler import Counters, Scheduler
from .speculative import DraftSetup
from .thread_tuner import ThreadTuner

SHUTDOWN_MESSAGE = "the server is shutting down"


@dataclass
class EngineConfig:
    n_slots: int = 1
    n_ctx_slot: int = 4096
    n_batch: int = 512
    n_threads: int | None = None
    draft: DraftSetup | None = None  # speculative decoding (set by the load function, like n_ctx_slot)
    sleep_idle_seconds: float | None = None  # --sleep-idle-seconds: release the model after this long idle
    kv_pool: int | None = None  # a unified KV cache of this many cells shared by the slots (None: one per slot)
    context_shift: bool = False  # --context-shift (scheduler.py)
    add_bos: bool = False  # the model's prompts start with BOS (a context shift keeps it)
    cache_types: tuple[GGMLType, GGMLType] = (GGMLType.F16, GGMLType.F16)  # -ctk, -ctv (ops/kv_quant.py)
    lora: LoraSet | None = None  # LoRA adapters (set by the load function, like n_ctx_slot)
    cache_ram_mib: int = 0  # --cache-ram: the RAM prompt cache's size (0: none, -1: no limit)
    cache_idle_slots: bool = True  # --cache-idle-slots (with a prompt cache)


@dataclass(frozen=True)
class _Submit:
    req: GenRequest


@dataclass(frozen=True)
class _Cancel:
    request_id: int


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class SlotAction:
    """save / restore / erase a slot's state (`path` for the first two); done when the slot is idle."""

    kind: str
    id_slot: int
    path: str
    future: Future


@dataclass(frozen=True)
class Wake:
    """A task that only wakes a sleeping model thread."""


@dataclass(frozen=True)
class SlotInfo:
    """A slot as /slots shows it (read without locking: a snapshot, possibly a step old)."""

    id: int
    n_ctx: int
    request: GenRequest | None
    n_decoded: int
    n_cached_tokens: int
    speculative: bool = False  # the slot drafts with a draft model


class ModelThread:
    """One thread owns a model: `start()` loads it there; other threads queue work on `tasks` and wait with
    `wait_ready()`. Subclasses say what a task is (`submit`, `stop`) and run the thread (`_run`)."""

    thread_name = "llamacpy-model"

    def __init__(self, load: Callable[[], tuple[object, set[int]]], config: EngineConfig,
                 log: Callable[[str], None] = lambda msg: None, release: Callable[[], None] = lambda: None):
        self.load, self.config, self.log, self.release = load, config, log, release
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.sleeping = threading.Event()  # the model is released (--sleep-idle-seconds)
        self._awake = threading.Event()
        self._awake.set()
        self._n_threads = 0
        self.ready = threading.Event()     # the model is loaded and warm
        self.finished = threading.Event()  # the thread has ended (stopped, or failed to load)
        self.error: str | None = None      # why loading failed
        self._stopping = False
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once ready; False on timeout or when loading failed (see `error`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self.ready.is_set() or self.finished.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.ready.wait(0.05)
        return self.ready.is_set()

    def wake(self, timeout: float | None = None) -> bool:
        """Load a sleeping model again; returns once it is awake (False on timeout). Any thread."""
        if self.sleeping.is_set():
            self.tasks.put(Wake())
        return self._awake.wait(timeout)

    def _next_task(self) -> object:
        """The next task (blocking); past sleep_idle_seconds without one, the model sleeps until it comes."""
        try:
            return self.tasks.get(timeout=self.config.sleep_idle_seconds)
        except queue.Empty:
            pass
        self._awake.clear()
        self._release()
        self.release()
        gc.collect()
        self.sleeping.set()
        self.log(f"sleeping: the model is released after {self.config.sleep_idle_seconds:g} s idle")
        task = self.tasks.get()
        if not self._is_stop(task):
            t0 = time.perf_counter()
            self._start_up(self._n_threads)
            self.log(f"awake: the model is loaded again in {time.perf_counter() - t0:.1f} s")
        self.sleeping.clear()
        self._awake.set()
        return task

    def _join(self, timeout: float) -> None:
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._n_threads = set_num_threads(self.config.n_threads)
            self._start_up(self._n_threads)
        except Exception as e:  # noqa: BLE001 - reported to the server, which exits
            self.error = f"{type(e).__name__}: {e}"
            self.finished.set()
            return
        self.ready.set()
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - a bug: fail every request rather than leave them hanging
            self.error = f"the engine stopped: {type(e).__name__}: {e}"
            self.log(self.error)
            self._fail_running(self.error)
        finally:
            with self._submit_lock:  # from now on submit() answers at once; answer what is still queued
                self._stopping = True
            self.finished.set()
            while True:
                try:
                    task = self.tasks.get_nowait()
                except queue.Empty:
                    break
                self._refuse(task, self.error or SHUTDOWN_MESSAGE)

    # -- what each kind of model thread says for itself ------------------------------------------------------

    def _start_up(self, n_threads: int) -> None:
        """Load the model and warm its kernels up, on the thread (`n_threads`: the kernel threads set)."""
        raise NotImplementedError

    def _loop(self) -> None:
        """Serve tasks until told to stop."""
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the model and whatever holds its memory (going to sleep); `_start_up` brings them back."""
        raise NotImplementedError

    def _is_stop(self, task: object) -> bool:
        raise NotImplementedError

    def _fail_running(self, message: str) -> None:
        """End the work in progress with an error (after a bug stopped `_loop`)."""

    def _refuse(self, task: object, message: str) -> None:
        """Answer a task still queued when the thread ends."""


class Engine(ModelThread):
    """Owns the model, KV cache and scheduler on one thread.

    >>> engine = Engine(load, EngineConfig(n_slots=4, n_ctx_slot=1024)); engine.start()
    >>> engine.wait_ready(); rid = engine.submit(GenRequest(prompt, sink=callback)); engine.cancel(rid)
    """

    thread_name = "llamacpy-engine"

    def __init__(self, load: Callable[[], tuple[DecoderModel, set[int]]], config: EngineConfig,
                 log: Callable[[str], None] = lambda msg: None, release: Callable[[], None] = lambda: None):
        super().__init__(load, config, log, release)
        self.scheduler: Scheduler | None = None
        self._counters = Counters()  # kept while the model sleeps
        self._slot_actions: list[SlotAction] = []  # waiting for their slot to be idle
        self._ids = itertools.count()

    # -- API for other threads -----------------------------------------------------------------------------

    def submit(self, req: GenRequest) -> int:
        """Queue a request; returns its id. Its events go to `req.sink` on the engine thread."""
        req.id = next(self._ids)
        with self._submit_lock:
            if not self._stopping:
                self.tasks.put(_Submit(req))
                return req.id
        req.sink(DoneEvent(EndReason.SHUTDOWN, Stats(), self.error or SHUTDOWN_MESSAGE))
        return req.id

    def cancel(self, request_id: int) -> None:
        """Stop a request (queued or running); its slot is free before the next step."""
        self.tasks.put(_Cancel(request_id))

    def slot_action(self, kind: str, id_slot: int, path: str = "") -> Future:
        """Queue a slot action ("save", "restore", "erase"); it waits for the slot to be idle, as llama-server
        defers it. The future's result: (tokens, bytes) for save / restore, tokens erased for erase."""
        future: Future = Future()
        if id_slot < 0 or id_slot >= self.config.n_slots:
            future.set_exception(ValueError("Invalid slot ID"))
        else:
            self.tasks.put(SlotAction(kind, id_slot, path, future))
        return future

    def stop(self, timeout: float = 5.0) -> None:
        """End every request with SHUTDOWN and stop the thread."""
        self._stopping = True
        self.tasks.put(_Stop())
        self._join(timeout)

    # -- snapshots for /slots and /metrics -----------------------------------------------------------------

    def slots(self) -> list[SlotInfo]:
        if self.scheduler is None:
            return []
        return [SlotInfo(s.id, s.n_ctx, s.req, s.stats.n_decoded, len(s.seq.tokens), s.drafter is not None)
                for s in self.scheduler.slots]

    def counters(self) -> Counters:
        return self._counters

    def n_waiting(self) -> int:
        return len(self.scheduler.waiting) if self.scheduler else 0

    # -- the thread ------------------------------------------------------------------------------------------

    def _start_up(self, n_threads: int) -> None:
        model, eog_ids = self.load()
        c = self.config
        # threads not given: the engine picks, step by step, between all and one (thread_tuner.py)
        tuner = ThreadTuner.unless_given(c.n_threads, n_threads)
        self.scheduler = Scheduler(model, c.n_slots, c.n_ctx_slot, c.n_batch, eog_ids, tuner, c.draft, c.kv_pool,
                                   c.context_shift, c.add_bos, c.cache_types, c.lora,
                                   PromptCache(max(c.cache_ram_mib, 0) << 20) if c.cache_ram_mib else None,
                                   c.cache_idle_slots)
        self.scheduler.counters = self._counters  # the totals since start outlive a sleep
        self._warmup(model)

    def _release(self) -> None:
        self.scheduler = None

    def _is_stop(self, task: object) -> bool:
        return isinstance(task, _Stop)

    def _fail_running(self, message: str) -> None:
        self.scheduler.cancel_all(EndReason.ERROR, message)

    def _refuse(self, task: object, message: str) -> None:
        if isinstance(task, _Submit):
            task.req.sink(DoneEvent(EndReason.SHUTDOWN, Stats(), message))

    def _loop(self) -> None:
        while True:
            tasks = [self._next_task()] if not self.scheduler.has_work else []
            while True:
                try:
                    tasks.append(self.tasks.get_nowait())
                except queue.Empty:
                    break
            if not self._serve(tasks):
                return

    def _serve(self, tasks: list) -> bool:
        """Apply the tasks, run a step; False on stop. (No local outlives it: asleep, nothing holds the model.)"""
        sched = self.scheduler
        for task in tasks:
            if isinstance(task, _Submit):
                sched.add(task.req)
            elif isinstance(task, _Cancel):
                sched.cancel(task.request_id)
            elif isinstance(task, SlotAction):
                self._slot_actions.append(task)
            elif isinstance(task, _Stop):
                sched.cancel_all(EndReason.SHUTDOWN, SHUTDOWN_MESSAGE)
                for action in self._slot_actions:
                    action.future.set_exception(RuntimeError(SHUTDOWN_MESSAGE))
                return False
        if self._slot_actions:
            self._run_slot_actions()
        if sched.has_work:
            sched.step()
        return True

    def _run_slot_actions(self) -> None:
        sched, waiting = self.scheduler, []
        for action in self._slot_actions:
            if sched.slots[action.id_slot].busy:
                waiting.append(action)
                continue
            try:
                if action.kind == "save":
                    result = sched.save_slot(action.id_slot, action.path)
                elif action.kind == "restore":
                    result = sched.restore_slot(action.id_slot, action.path)
                else:
                    result = sched.erase_slot(action.id_slot)
            except Exception as e:  # noqa: BLE001 - the action's answer (a file that cannot be used, disk full)
                action.future.set_exception(e)
            else:
                action.future.set_result(result)
        self._slot_actions = waiting

    def _warmup(self, model: DecoderModel) -> None:
        """Compile (or load from numba's cache) every kernel path a step can take, before serving:
        single-row decode, a few rows, a small prompt chunk and a large one."""
        sched = self.scheduler
        drafter = sched.slots[0].drafter
        f16 = sched.cache.type_k == sched.cache.type_v == GGMLType.F16  # the fused step's cache
        model.fused_gate = precompile.start(model, drafter is not None, self.log) if f16 else None
        n_ctx = sched.slots[0].n_ctx
        batches = [[Segment(0, 0, 1)], [Segment(s.id, 0, 1) for s in sched.slots], [Segment(0, 0, min(16, n_ctx))]]
        if n_ctx >= 64:
            batches.append([Segment(0, 0, 64)])
        for segments in batches:
            n = sum(s.n for s in segments)
            model.forward(np.zeros(n, np.int64), segments, sched.cache)
        precompile.mark_compiled(model)  # if the fused step ran here
        if drafter is not None:  # a draft round: the draft's steps, the check's row-exact one
            n = min(17, n_ctx)
            model.forward(np.zeros(n, np.int64), [Segment(0, 0, n)], sched.cache, np.arange(n), row_exact=True)
            drafter.seq.feed([0])
            drafter.seq.reset(0)
            precompile.mark_compiled(model, row_exact=True)
