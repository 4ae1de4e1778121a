"""Moving KV cells, as llama-server does. --context-shift (server-context.cpp pre_decode): a reply that fills its slot
drops the older half of what follows the first n_keep tokens (BOS kept besides) and goes on; the kept cells move
down with their keys re-rotated to the new positions. Off (the default), the reply ends there, truncated.
--cache-reuse N: runs of at least N cached tokens that a new prompt has later on are moved into place."""

from __future__ import annotations

import numpy as np
import pytest
from test_scheduler import GREEDY, run, submit

from llamacpy.engine.scheduler import Scheduler
from llamacpy.engine.sequence import Sequence
from llamacpy.gguf import GGUFFile
from llamacpy.models import load_model
from llamacpy.tokenizer import Tokenizer

pytestmark = pytest.mark.slow

TEXT = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
        "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip.")


@pytest.fixture(scope="module", params=["smollm2_path", "qwen05_path", "gemma_path"])
def loaded(request):
    g = GGUFFile(request.getfixturevalue(request.param))
    return load_model(g), Tokenizer.from_gguf(g)


def _f16_ulp(x: np.ndarray) -> np.ndarray:
    return np.spacing(np.abs(x).astype(np.float16)).astype(np.float32)


def test_shifted_cells_hold_what_the_kept_tokens_give_at_their_new_positions(loaded):
    """Layer 0's keys and values depend on a token and its position only: after dropping [4, 44) of 100 tokens,
    the 60 cells left equal a fresh cache of those 60 tokens (values moved as they are, keys re-rotated by -40
    within two f16 steps) on llama's NORM rope, qwen2's NEOX and gemma3's two bases (layers 0 and 5)."""
    model, tok = loaded
    ids = tok.encode(TEXT * 3, add_special=True, parse_special=False)[:100]
    assert len(ids) == 100
    shifted, fresh = Sequence(model, model.new_cache(128)), Sequence(model, model.new_cache(128))
    for t in ids:  # one token a step: a projection's bits may depend on a batch's row count, not tested here
        shifted.feed([t])
    shifted.shift(4, 40)
    for t in ids[:4] + ids[44:]:
        fresh.feed([t])
    assert shifted.tokens == fresh.tokens
    for layer in (0, 5):  # gemma3: 0 is a sliding-window layer (local base), 5 a global one
        k, k_ref = (s.cache.k[layer][0][:, :60].astype(np.float32) for s in (shifted, fresh))
        v, v_ref = (s.cache.v[layer][0][:, :60].astype(np.float32) for s in (shifted, fresh))
        if layer == 0:
            np.testing.assert_array_equal(v, v_ref)
            # two roundings (f16 after the first rotation, then after the second) against one: within two f16
            # steps of the head's largest key; a wrong angle would be off by the keys' own size
            assert np.all(np.abs(k - k_ref) <= 2 * _f16_ulp(np.abs(k_ref).max(axis=-1, keepdims=True)))
            assert np.abs(k - k_ref).max() < 0.01 * np.abs(k_ref).max()
        np.testing.assert_array_equal(k[:, :4], k_ref[:, :4])  # the kept front is not touched
    # a move by 0 positions or past the context is refused, not silently wrong
    for src, dst, n in ((4, 4, 10), (100, 0, 40)):
        with pytest.raises(ValueError):
            model.move_cells(shifted.cache, 0, src, dst, n)


def test_a_reply_longer_than_the_slot_goes_on_after_a_shift(loaded):
    model, tok = loaded
    prompt = tok.encode(TEXT, add_special=True, parse_special=False)[:24]
    on = Scheduler(model, n_slots=1, n_ctx_slot=64, n_batch=64, eog_ids=tok.eog_ids, context_shift=True,
                   add_bos=tok.add_bos)
    rec = submit(on, prompt, n_predict=80, ignore_eos=True, n_keep=-1)
    run(on)
    assert len(rec.tokens) == 80 and rec.done.reason.value == "length" and rec.done.stats.truncated
    slot = on.slots[0]
    assert slot.seq.tokens[:len(prompt)] == prompt  # n_keep -1: the whole prompt stays in front
    assert len(slot.seq.tokens) < 64

    off = Scheduler(model, n_slots=1, n_ctx_slot=64, n_batch=64, eog_ids=tok.eog_ids)
    rec_off = submit(off, prompt, n_predict=80, ignore_eos=True)
    run(off)
    assert rec_off.done.reason.value == "context" and len(rec_off.tokens) == 64 - len(prompt)
    # up to the shift both replies are the same (greedy)
    assert rec.tokens[:len(rec_off.tokens)] == rec_off.tokens


def test_n_discard_and_n_keep_are_the_requests(loaded):
    model, tok = loaded
    prompt = tok.encode(TEXT, add_special=True, parse_special=False)[:20]
    sched = Scheduler(model, n_slots=1, n_ctx_slot=48, n_batch=64, eog_ids=tok.eog_ids, context_shift=True,
                      add_bos=tok.add_bos)
    rec = submit(sched, prompt, sampling=GREEDY, n_predict=30, ignore_eos=True, n_keep=5, n_discard=3)
    run(sched)
    keep = 5 + int(tok.add_bos)
    # the 28th token is sampled with 47 cells held: one shift of 3; the 30th (the last) is not stored
    held = sched.slots[0].seq.tokens
    assert rec.done.stats.truncated and len(rec.tokens) == 30 and len(held) == 20 + 29 - 3
    assert held[:keep] == prompt[:keep] and held[keep:20 - 3] == prompt[keep + 3:]


LONG = TEXT * 3  # 216 tokens of smollm2's: with 96 more, past a slot of 512 / 2


@pytest.mark.parametrize("flag", ["--context-shift", None])
def test_server_context_shift_flag(start_server, smollm2_path, flag):
    """llama.cpp's test_ctx_shift_enabled with this model's token counts: -c 512 -np 2 (256 a slot)."""
    server = start_server(smollm2_path, "-c", "512", "-np", "2", *([flag] if flag else []))
    with server.client(timeout=300) as http:
        r = http.post("/completion", json={"prompt": LONG, "n_predict": 96, "ignore_eos": True, "n_keep": 8})
        assert r.status_code == 200, r.text
        body = r.json()
    n_prompt = body["timings"]["prompt_n"]
    assert 256 - 96 < n_prompt < 256 - 8
    assert body["truncated"] is True and body["generation_settings"]["n_keep"] == 8
    if flag:
        assert body["timings"]["predicted_n"] == 96 and body["stop_type"] == "limit"
        assert "slot 0: context shift, n_keep = " in server.log_text()
    else:  # the reply ends when the slot is full
        assert body["timings"]["predicted_n"] == 256 - n_prompt


def test_cache_reuse_moves_the_runs_a_new_prompt_has_further_on(loaded):
    """A prompt with a middle part cut out (a chat whose history was edited): with n_cache_reuse 16 the part after
    the cut is moved, not evaluated; without, only the common prefix is reused."""
    model, tok = loaded
    ids = tok.encode(TEXT * 2, add_special=True, parse_special=False)
    head, middle, tail = ids[:10], ids[10:30], ids[30:70]
    extra = tok.encode(" and so on", add_special=False, parse_special=False)
    for n_reuse, cached in ((16, 50), (41, 10), (0, 10)):
        sched = Scheduler(model, n_slots=1, n_ctx_slot=128, n_batch=128, eog_ids=tok.eog_ids)
        submit(sched, head + middle + tail, n_predict=1)
        run(sched)
        rec = submit(sched, head + tail + extra, n_predict=4, n_cache_reuse=n_reuse)
        run(sched)
        assert rec.done.stats.n_cached == cached, n_reuse
        assert sched.slots[0].seq.tokens[:len(head + tail)] == head + tail
    # layer 0 of the moved cells is what those tokens give at their new positions
    fresh = Sequence(model, model.new_cache(128))
    fresh.feed(head + tail + extra)
    sched = Scheduler(model, n_slots=1, n_ctx_slot=128, n_batch=128, eog_ids=tok.eog_ids)
    submit(sched, head + middle + tail, n_predict=1)
    run(sched)
    sched.slots[0].seq.reuse_chunks(head + tail + extra, 10, 16)
    assert sched.slots[0].seq.tokens == head + tail
    k, k_ref = (c.k[0][0][:, 10:50].astype(np.float32) for c in (sched.cache, fresh.cache))
    assert np.abs(k - k_ref).max() < 0.02 * np.abs(k_ref).max()


def test_server_cache_reuse_flag(start_server, smollm2_path):
    server = start_server(smollm2_path, "-c", "1024", "-np", "1", "--cache-reuse", "16")
    with server.client(timeout=300) as http:
        first = http.post("/completion", json={"prompt": TEXT + " Duis aute irure dolor." + TEXT, "n_predict": 1})
        assert first.status_code == 200 and first.json()["generation_settings"]["n_cache_reuse"] == 16
        again = http.post("/completion", json={"prompt": TEXT + TEXT + " More.", "n_predict": 1}).json()
        off = http.post("/completion", json={"prompt": TEXT + " Other." + TEXT + " More.", "n_predict": 1,
                                             "n_cache_reuse": 0}).json()
    n_text = again["timings"]["prompt_n"] + again["timings"]["cache_n"]
    assert again["timings"]["cache_n"] >= n_text - 8  # both copies of TEXT came from the cache
    assert off["timings"]["cache_n"] <= n_text // 2 + 2  # the common prefix only
