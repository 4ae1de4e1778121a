"""The replay buffer without HTTP: sessions, the manager, the producer pump (threads and asyncio)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llamacpy.server.streams import (
    ReadState,
    StreamLimits,
    StreamManager,
    StreamSession,
    TooManyStreams,
    pump,
)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def read_all(session: StreamSession, offset: int = 0) -> bytes:
    data, _ = session.read(offset, limit=1 << 30)
    return data


# -- the byte ring ----------------------------------------------------------------------------------------------


def test_offsets_are_absolute_and_chunks_whole():
    s = StreamSession("c")
    assert s.append(b"data: 1\n\n") and s.append(b":\n\n") and s.append(b"data: [DONE]\n\n")
    body = b"data: 1\n\n:\n\ndata: [DONE]\n\n"
    assert s.total_bytes == len(body) and read_all(s) == body
    assert read_all(s, 9) == body[9:]
    assert s.read(len(body)) == (b"", ReadState.MORE)
    s.finalize()
    assert s.read(len(body)) == (b"", ReadState.END)
    assert s.read(3) == (body[3:], ReadState.END)


def test_cap_drops_exactly_the_overflow_oldest_first():
    s = StreamSession("c", cap_bytes=10)
    s.append(b"0123456")
    s.append(b"789ab")  # 12 bytes: the 2 oldest go
    assert s.dropped_bytes == 2 and s.total_bytes == 12
    assert read_all(s, 2) == b"23456789ab"
    assert s.read(1) == (b"", ReadState.LOST)
    assert read_all(s, 11) == b"b"


def test_a_chunk_larger_than_the_cap_keeps_its_tail():
    s = StreamSession("c", cap_bytes=4)
    s.append(b"xy")
    s.append(b"abcdefgh")
    assert s.total_bytes == 10 and s.dropped_bytes == 6
    assert read_all(s, 6) == b"efgh"
    assert s.read(5)[1] is ReadState.LOST


def test_memory_stays_bounded_under_many_appends():
    cap = 1000
    s = StreamSession("c", cap_bytes=cap)
    payload = bytes(range(256)) * 4
    for i in range(5000):
        s.append(payload[: 1 + i % 97])
        assert s.held_bytes <= cap * 1.25 + 97
    assert s.total_bytes - s.dropped_bytes == cap
    tail, _ = s.read(s.dropped_bytes)
    assert len(tail) == cap


def test_appends_after_finalize_are_dropped_and_empty_appends_ignored():
    s = StreamSession("c")
    assert s.append(b"") is True and s.total_bytes == 0
    s.append(b"abc")
    s.finalize()
    first = s.completed_at
    assert s.append(b"more") is False and s.total_bytes == 3
    s.finalize()  # idempotent
    assert s.completed_at == first and s.done


def test_status_fields():
    clock = FakeClock(1000.7)
    s = StreamSession("conv::m", clock=clock)
    s.append(b"abcd")
    assert s.status() == {"conversation_id": "conv::m", "is_done": False, "total_bytes": 4,
                          "started_at": 1000, "completed_at": 0}
    clock.t = 1003.2
    s.finalize()
    assert s.status()["is_done"] and s.status()["completed_at"] == 1003


def test_cancel_callbacks_run_once_even_when_registered_late():
    s = StreamSession("c")
    calls = []
    s.on_cancel(lambda: calls.append("early"))
    s.cancel()
    s.cancel()
    s.on_cancel(lambda: calls.append("late"))
    assert calls == ["early", "late"] and s.cancelled


# -- waiting: threads and asyncio --------------------------------------------------------------------------------


def test_wait_sync_wakes_on_append_and_times_out():
    s = StreamSession("c")
    assert s.wait_sync(0, timeout=0.01) is False
    threading.Timer(0.05, s.append, (b"x",)).start()
    t0 = time.monotonic()
    assert s.wait_sync(0, timeout=5) is True
    assert time.monotonic() - t0 < 2


def test_async_follow_sees_every_byte_from_a_producer_thread():
    s = StreamSession("c")
    chunks = [f"data: {i}\n\n".encode() for i in range(300)]

    def produce():
        for i, c in enumerate(chunks):
            s.append(c)
            if i % 50 == 0:
                time.sleep(0.01)
        s.finalize()

    async def consume(offset):
        return b"".join([c async for c in s.follow(offset)])

    async def main():
        threading.Thread(target=produce).start()
        return await asyncio.gather(consume(0), consume(0), consume(7))

    a, b, c = asyncio.run(asyncio.wait_for(main(), 10))
    body = b"".join(chunks)
    assert a == body and b == body and c == body[7:]


def test_follow_ends_when_the_cap_overtakes_a_slow_reader():
    s = StreamSession("c", cap_bytes=8)

    async def main():
        s.append(b"abcd")
        got = []
        async for chunk in s.follow(0):
            got.append(chunk)
            s.append(b"0123456789")  # the reader is at 4, the ring now starts at 6
        return got

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [b"abcd"]


def test_follow_stops_when_the_client_is_gone():
    s = StreamSession("c")
    s.append(b"x")

    async def gone():
        return True

    async def main():
        return [c async for c in s.follow(0, poll_s=0.01, gone=gone)]

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [b"x"]
    assert not s.done  # only the reader ended


def test_follow_from_the_end_of_a_finished_session_is_empty():
    s = StreamSession("c")
    s.append(b"abc")
    s.finalize()

    async def main():
        return [c async for c in s.follow(3)]

    assert asyncio.run(main()) == []


# -- the manager -------------------------------------------------------------------------------------------------


def test_replacement_cancels_and_finalizes_the_old_session():
    m = StreamManager()
    old = m.create("c")
    old.append(b"old")
    new = m.create("c")
    assert old.cancelled and old.done and not new.done
    assert m.get("c") is new and new.total_bytes == 0
    assert old.append(b"late") is False
    assert len(m) == 1


def test_delete_is_idempotent_and_stops_the_producer():
    m = StreamManager()
    s = m.create("c")
    assert m.delete("c") is True
    assert s.cancelled and s.done and m.get("c") is None
    assert m.delete("c") is False and m.delete("never") is False


def test_lookup_answers_only_the_ids_asked():
    m = StreamManager()
    for cid in ("a", "a::m1", "ab", "b", "x::a"):
        m.create(cid).append(cid.encode())
    got = [r["conversation_id"] for r in m.lookup(["a"])]
    assert sorted(got) == ["a", "a::m1"]
    assert [r["conversation_id"] for r in m.lookup(["a::m1"])] == ["a::m1"]
    assert m.lookup(["zzz", "", None, 3, "a:"]) == []
    assert [r["conversation_id"] for r in m.lookup(["b", "b"])] == ["b", "b"]  # asked twice, answered twice
    assert m.lookup([]) == []


def test_finished_sessions_expire_after_the_ttl():
    clock = FakeClock()
    m = StreamManager(StreamLimits(ttl_s=300), clock=clock)
    s = m.create("c")
    s.append(b"abc")
    live = m.create("live")
    clock.t += 10_000
    assert m.get("live") is live  # a live session never expires
    s.finalize()
    clock.t += 299
    assert m.get("c") is s and m.lookup(["c"])
    clock.t += 1
    assert m.lookup(["c"]) == [] and m.get("c") is None
    assert m.collect() == 0 and len(m) == 1


def test_collector_thread_drops_expired_sessions():
    m = StreamManager(StreamLimits(ttl_s=0.05, gc_interval_s=0.05))
    m.start()
    try:
        m.create("c").finalize()
        deadline = time.monotonic() + 5
        while len(m) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(m) == 0
    finally:
        m.stop()


def test_session_count_is_capped_and_finished_sessions_give_way():
    clock = FakeClock()
    m = StreamManager(StreamLimits(max_sessions=3), clock=clock)
    a, b, c = m.create("a"), m.create("b"), m.create("c")
    with pytest.raises(TooManyStreams):
        m.create("d")
    assert m.create("b") is not b  # replacing an id needs no room
    clock.t += 1
    a.finalize()
    clock.t += 1
    c.finalize()
    m.create("d")  # the oldest finished session (a) gives way
    assert m.get("a") is None and m.get("c") is c and len(m) == 3


def test_limits_are_checked_up_front():
    for bad in ({"cap_bytes": 0}, {"max_sessions": 0}, {"ttl_s": -1}):
        with pytest.raises(ValueError):
            StreamLimits(**bad)


def test_hundred_sessions_hold_at_most_the_cap_each():
    cap = 4096
    m = StreamManager(StreamLimits(cap_bytes=cap, max_sessions=100))
    sessions = [m.create(f"conv-{i}") for i in range(100)]
    chunk = b"data: " + b"x" * 90 + b"\n\n"
    for _ in range(200):
        for s in sessions:
            s.append(chunk)
    assert all(s.total_bytes == 200 * len(chunk) for s in sessions)
    assert sum(s.held_bytes for s in sessions) <= 100 * (cap * 1.25 + len(chunk))


def test_stop_ends_every_session_and_reader():
    m = StreamManager()
    m.start()
    s = m.create("c")
    s.append(b"abc")
    woke = threading.Event()

    def reader():
        s.wait_sync(3, timeout=10)
        woke.set()

    threading.Thread(target=reader).start()
    m.stop()
    assert woke.wait(5) and s.done and s.cancelled and len(m) == 0


# -- the producer -------------------------------------------------------------------------------------------------


class Generation:
    """An SSE chunk source like the server's: waits for tokens, records whether it was closed."""

    def __init__(self, n: int, delay: float = 0.0):
        self.n, self.delay, self.closed, self.produced = n, delay, False, 0

    async def chunks(self):
        try:
            for i in range(self.n):
                await asyncio.sleep(self.delay)
                self.produced += 1
                yield f"data: {i}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            self.closed = True


def test_pump_drains_a_generation_nobody_reads():
    s = StreamSession("c")
    gen = Generation(20)
    asyncio.run(pump(s, gen.chunks()))
    assert s.done and gen.closed
    assert read_all(s).endswith(b"data: 19\n\ndata: [DONE]\n\n")


def test_cancelling_the_session_stops_the_generation_mid_wait():
    async def main():
        m = StreamManager()
        s = m.create("c")
        gen = Generation(1000, delay=0.05)
        task = m.start_producer(s, gen.chunks())
        reader = asyncio.create_task(_collect(s.follow(0)))
        while s.total_bytes < 3 * len(b"data: 0\n\n"):
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        threading.Thread(target=m.delete, args=("c",)).start()  # DELETE arrives on another thread
        await asyncio.wait_for(task, 2)
        stopped_in = time.monotonic() - t0
        body = await asyncio.wait_for(reader, 2)
        return s, gen, stopped_in, body

    s, gen, stopped_in, body = asyncio.run(main())
    assert gen.closed and s.done and stopped_in < 1.5  # a chunk is 0.05 s; all 1000 would take 50 s
    assert gen.produced < 1000 and not body.endswith(b"[DONE]\n\n")
    assert body == read_all(s)


def test_replacement_ends_the_old_stream_without_done_and_the_new_one_runs():
    async def main():
        m = StreamManager()
        old = m.create("c")
        gen_old = Generation(1000, delay=0.02)
        m.start_producer(old, gen_old.chunks())
        old_reader = asyncio.create_task(_collect(old.follow(0)))
        await asyncio.sleep(0.1)
        new = m.create("c")
        gen_new = Generation(3)
        await m.start_producer(new, gen_new.chunks())
        return await asyncio.wait_for(old_reader, 2), gen_old, new

    old_body, gen_old, new = asyncio.run(main())
    assert gen_old.closed and not old_body.endswith(b"[DONE]\n\n")
    assert read_all(new) == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


def test_shutdown_cancels_producers():
    async def main():
        m = StreamManager()
        s = m.create("c")
        gen = Generation(1000, delay=0.02)
        task = m.start_producer(s, gen.chunks())
        await asyncio.sleep(0.05)
        m.stop()
        await asyncio.wait_for(task, 2)
        return s, gen

    s, gen = asyncio.run(main())
    assert s.done and gen.closed


async def _collect(stream) -> bytes:
    return b"".join([c async for c in stream])


def test_shutdown_lets_producers_record_their_end_first():
    async def ending():
        yield b"data: 1\n\n"
        await asyncio.sleep(0.05)
        yield b'data: {"error": "shutting down"}\n\n'

    async def main():
        m = StreamManager()
        s = m.create("c")
        m.start_producer(s, ending())
        await asyncio.sleep(0.01)
        await m.shutdown(grace_s=2)
        return s

    s = asyncio.run(main())
    assert s.done and read_all(s).endswith(b"shutting down\"}\n\n")
