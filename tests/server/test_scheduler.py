"""The engine's scheduler driven step by step with the real default model (no HTTP, no thread)."""

from __future__ import annotations

import pytest

from llamacpy.engine import DoneEvent, EndReason, GenRequest, TokenEvent
from llamacpy.engine.scheduler import Scheduler
from llamacpy.gguf import GGUFFile
from llamacpy.models import load_model
from llamacpy.sampling import SamplingParams
from llamacpy.tokenizer import Tokenizer

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def loaded(smollm2_path):
    g = GGUFFile(smollm2_path)
    return load_model(g), Tokenizer.from_gguf(g)


@pytest.fixture
def sched(loaded):
    model, tok = loaded
    return Scheduler(model, n_slots=2, n_ctx_slot=128, n_batch=64, eog_ids=tok.eog_ids)


class Recorder:
    def __init__(self):
        self.tokens: list[int] = []
        self.done: DoneEvent | None = None

    def __call__(self, event: TokenEvent | DoneEvent) -> None:
        assert self.done is None, "no event may follow DoneEvent"
        if isinstance(event, DoneEvent):
            self.done = event
        else:
            self.tokens.append(event.token)


def submit(sched: Scheduler, prompt: list[int], **kw) -> Recorder:
    rec = Recorder()
    req = GenRequest(prompt, kw.pop("sampling", GREEDY), sink=rec, **kw)
    req.id = id(rec)
    sched.add(req)
    return rec


def run(sched: Scheduler, limit: int = 500) -> None:
    for _ in range(limit):
        if not sched.has_work:
            return
        sched.step()
    raise AssertionError("the scheduler did not finish")


def test_same_prompt_twice_gives_the_same_tokens_from_the_cache(sched, loaded):
    prompt = loaded[1].encode("The capital of France is")
    first = submit(sched, prompt, n_predict=8)
    run(sched)
    second = submit(sched, prompt, n_predict=8)
    run(sched)
    assert second.tokens == first.tokens and len(first.tokens) == 8
    assert second.done.stats.n_cached == len(prompt) and first.done.stats.n_cached == 0
    assert first.done.reason == EndReason.LENGTH


def test_more_requests_than_slots_wait_their_turn(sched, loaded):
    tok = loaded[1]
    recs = [submit(sched, tok.encode(f"Count to {i}:"), n_predict=4) for i in range(5)]
    sched.step()
    assert len(sched.waiting) == 3
    run(sched)
    assert all(r.done.reason == EndReason.LENGTH and len(r.tokens) == 4 for r in recs)


def test_cancel_frees_the_slot_before_the_next_step(sched, loaded):
    rec = submit(sched, loaded[1].encode("Once upon a time"), n_predict=100)
    for _ in range(3):
        sched.step()
    sched.cancel(id(rec))
    assert rec.done.reason == EndReason.CANCELLED and not sched.has_work
    assert not any(s.busy for s in sched.slots)


def test_a_bad_request_fails_alone(sched, loaded):
    good = submit(sched, loaded[1].encode("Hello"), n_predict=4)
    bad = submit(sched, [1, 10**9], n_predict=4)
    empty = submit(sched, [], n_predict=4)
    too_long = submit(sched, [1] * 128, n_predict=4)
    unsamplable = submit(sched, [1, 2, 3], n_predict=4, sampling=SamplingParams(temperature=1.0, mirostat=3))
    run(sched)
    assert good.done.reason == EndReason.LENGTH and len(good.tokens) == 4
    for rec in (bad, empty, too_long, unsamplable):
        assert rec.done.reason == EndReason.ERROR and rec.done.message and not rec.tokens


def test_prompt_only_and_context_full(sched, loaded):
    prompt = loaded[1].encode("One two three")
    zero = submit(sched, prompt, n_predict=0)
    full = submit(sched, prompt, n_predict=-1, ignore_eos=True)
    run(sched)
    assert zero.done.reason == EndReason.LENGTH and zero.tokens == []
    assert full.done.reason == EndReason.CONTEXT and len(prompt) + len(full.tokens) == 128


def test_logprobs_are_reported_for_the_sampled_token(sched, loaded):
    rec = Recorder()
    events = []
    req = GenRequest(loaded[1].encode("The capital of France is"), GREEDY, n_predict=2, logprobs=True, n_probs=3,
                     sink=lambda e: (events.append(e), rec(e)))
    sched.add(req)
    run(sched)
    first = events[0]
    assert len(first.top) == 3 and first.top[0][0] == first.token and first.top[0][1] == first.logprob <= 0


# -- a unified KV cache (--kv-unified): the slots share one pool of cells -------------------------------------

def pool_sched(loaded, pool: int, n_slots: int = 2) -> Scheduler:
    model, tok = loaded
    return Scheduler(model, n_slots=n_slots, n_ctx_slot=pool, n_batch=64, eog_ids=tok.eog_ids, pool=pool)


def test_one_slot_may_use_the_whole_pool_and_gives_the_tokens_of_a_private_cache(loaded):
    prompt = loaded[1].encode("The capital of France is")
    unified = pool_sched(loaded, 96)
    alone = submit(unified, prompt, n_predict=80, ignore_eos=True)  # more than a 96 / 2 split would allow
    run(unified)
    private = Scheduler(loaded[0], n_slots=1, n_ctx_slot=96, n_batch=64, eog_ids=loaded[1].eog_ids)
    ref = submit(private, prompt, n_predict=80, ignore_eos=True)
    run(private)
    assert alone.done.reason == EndReason.LENGTH and alone.tokens == ref.tokens


def test_idle_caches_give_way_then_a_full_pool_fails_the_requests_in_progress(loaded):
    tok = loaded[1]
    sched = pool_sched(loaded, 96)
    first = submit(sched, tok.encode("Once upon a time"), n_predict=60, ignore_eos=True)
    run(sched)
    assert first.done.reason == EndReason.LENGTH and sched.pool_free() < 40  # its cache stays, idle
    both = [submit(sched, tok.encode("Hello"), n_predict=30, ignore_eos=True, id_slot=1),
            submit(sched, tok.encode("Hi there"), n_predict=30, ignore_eos=True, id_slot=0)]
    run(sched)
    assert [r.done.reason for r in both] == [EndReason.LENGTH, EndReason.LENGTH]  # the idle cache was dropped
    over = [submit(sched, tok.encode("Hello"), n_predict=60, ignore_eos=True, id_slot=i) for i in (0, 1)]
    run(sched)
    for r in over:
        assert r.done.reason == EndReason.ERROR and r.done.message == "Context size has been exceeded."
        assert len(r.tokens) < 60
    assert sched.pool_free() == 96  # the failed requests' cells are free again
    again = submit(sched, tok.encode("Hello"), n_predict=8)
    run(sched)
    assert again.done.reason == EndReason.LENGTH
