"""The engine's choice between all kernel threads and one, driven by simulated step times."""

from __future__ import annotations

import pytest

from llamacpy.engine import thread_tuner
from llamacpy.engine.thread_tuner import MAX_INTERVAL, ThreadTuner
from llamacpy.kernels.threads import SETTINGS, set_active_threads


@pytest.fixture(autouse=True)
def keep_thread_count(monkeypatch):
    chosen = []
    monkeypatch.setattr(thread_tuner, "set_active_threads", chosen.append)  # record, leave numba alone
    before = SETTINGS.n
    yield chosen
    if before:
        set_active_threads(before)


QUIET = {2: 0.008, 1: 0.014}  # seconds per decode step (smollm2 on 2 cores, quiet)
CONTENDED = {2: 0.200, 1: 0.015}  # another process busy on one core: the spinning pool collapses


def run(tuner: ThreadTuner, costs: dict[int, float], steps: int) -> tuple[float, list[int]]:
    total, used = 0.0, []
    for _ in range(steps):
        n = tuner.threads_for_next_step()
        total += costs[n]
        used.append(n)
        tuner.record(costs[n], rows=1, decode_only=True)
    return total, used


def test_quiet_machine_keeps_all_threads_and_probes_rarely():
    t = ThreadTuner(2)
    total, used = run(t, QUIET, 2000)
    assert t.choice == 2 and t.interval == MAX_INTERVAL
    assert used.count(1) <= 25
    assert total < 1.02 * 2000 * QUIET[2]  # under 2% lost to probing


def test_contention_switches_to_one_thread_and_back():
    t = ThreadTuner(2)
    run(t, QUIET, 300)
    total, used = run(t, CONTENDED, 2000)
    assert t.choice == 1
    assert used.index(1) <= 5  # noticed once half the window is slow (its median moved)
    assert used.count(2) <= 12  # probes of the collapsed pool end after one step
    assert total < 2000 * CONTENDED[1] + 12 * CONTENDED[2]
    _, used = run(t, QUIET, 2 * MAX_INTERVAL + 10)
    assert t.choice == 2 and used[-1] == 2  # the other process is gone: back to both threads


def test_prompt_steps_and_new_shapes_are_not_compared():
    t = ThreadTuner(2)
    run(t, QUIET, 100)
    t.record(5.0, rows=512, decode_only=False)  # a long prompt chunk: ignored
    assert t.choice == 2 and t.probe is None
    t.record(0.02, rows=4, decode_only=True)  # four slots decoding: a new shape, new samples
    assert list(t.recent) == [0.02] and t.baseline is None


def test_single_thread_configuration_is_left_alone():
    assert not ThreadTuner(1).active
