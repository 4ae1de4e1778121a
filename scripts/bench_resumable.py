"""Generation speed of a resumable stream (X-Conversation-Id) against the same stream without the header.

    python scripts/bench_resumable.py [--model smollm2-135m-instruct] [--tokens 256] [--reps 5] [--threads N]

Starts one server (one slot), then runs the same greedy /v1/completions stream in three modes, interleaved
rep by rep so that load on a shared machine hits every mode alike:

    plain      no header: the generation writes straight to a connected client
    attached   with the header, the client connected throughout (it reads the replay buffer)
    detached   with the header, the client hangs up after the response headers; the generation runs on,
               and its end is found by polling /v1/streams/lookup

Reported per mode: the engine's own tokens/s (`timings.predicted_per_second`, from the first
sampled token to the last, on the engine thread - buffering shows up here if it steals the GIL) and the
wall-clock tokens/s from the first response byte to the end of the stream, as medians and best of the
reps (on a shared machine the best is the least disturbed run); and the server process's CPU time per
token, which load from other processes disturbs least. The criterion: the resumable modes reach >= 0.95x
the plain mode's tokens/s.

`--micro` times only the buffering path, without a model or sockets: N SSE-sized chunks from an async
generator consumed directly, against the same chunks pumped into a session and read back by a follower.
The difference per chunk is what a resumable stream adds to each token (the event loop's cost, which
shares the GIL with the engine thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Here is a long story about a lighthouse keeper and the sea:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llamacpy", "server", "-m", model, "--port", str(port), "-np", "1", "-c", "2048"]
    if threads:
        cmd += ["-t", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        time.sleep(0.2)
    raise TimeoutError("the server did not become ready")


def last_timings(body: bytes) -> dict:
    frames = [f for f in body.split(b"\n\n") if f.startswith(b"data: {")]
    return json.loads(frames[-1][6:])["timings"]


def run_connected(client: httpx.Client, body: dict, headers: dict) -> tuple[dict, float]:
    with client.stream("POST", "/v1/completions", json=body, headers=headers) as r:
        chunks = r.iter_raw()
        first = next(chunks)
        t0 = time.perf_counter()
        data = first + b"".join(chunks)
        wall = time.perf_counter() - t0
    return last_timings(data), wall


def run_detached(client: httpx.Client, url: str, body: dict, cid: str) -> tuple[dict, float]:
    payload = json.dumps(body).encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nX-Conversation-Id: {cid}\r\n\r\n".encode() + payload)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        t0 = time.perf_counter()
    while True:  # the client is gone; the generation goes on
        st = client.post("/v1/streams/lookup", json={"conversation_ids": [cid]}).json()
        if st and st[0]["is_done"]:
            wall = time.perf_counter() - t0
            break
        time.sleep(0.1)  # each poll is a request the server handles: not too often
    replay = client.get(f"/v1/stream/{cid}").content
    client.delete(f"/v1/stream/{cid}")
    return last_timings(replay), wall


async def _chunks(n: int, size: int):
    chunk = b"data: " + b"x" * (size - 8) + b"\n\n"
    for _ in range(n):
        yield chunk
        await asyncio.sleep(0)  # a generation hands control back between tokens


async def _direct(n: int, size: int) -> int:
    return sum([len(c) async for c in _chunks(n, size)])


async def _buffered(n: int, size: int) -> int:
    from llamacpy.server.streams import StreamManager

    manager = StreamManager()
    session = manager.create("micro")
    manager.start_producer(session, _chunks(n, size))
    return sum([len(c) async for c in session.follow(0)])


def micro(n: int = 100_000, size: int = 300) -> None:
    times = {}
    for name, fn in (("direct", _direct), ("buffered", _buffered)) * 3:
        t0 = time.perf_counter()
        assert asyncio.run(fn(n, size)) == n * size
        times[name] = min(times.get(name, 1e9), time.perf_counter() - t0)
    extra = (times["buffered"] - times["direct"]) / n * 1e6
    print(f"{n} chunks of {size} bytes: direct {times['direct'] / n * 1e6:.1f} us/chunk, through a session "
          f"{times['buffered'] / n * 1e6:.1f} us/chunk: {extra:.1f} us added per token")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mode: str, client: httpx.Client, url: str, body: dict, rep: int) -> tuple[dict, float]:
    if mode == "plain":
        return run_connected(client, body, {})
    if mode == "attached":
        return run_connected(client, body, {"X-Conversation-Id": f"bench-a{rep}"})
    return run_detached(client, url, body, f"bench-d{rep}")


def report(a: argparse.Namespace, rows: dict[str, list[tuple[float, float, float]]]) -> None:
    print(f"\n{a.tokens} tokens, {a.reps} reps, model {a.model}, 1 slot\n")
    print("| mode | engine t/s (median, best) | wall t/s (median, best) | server CPU ms/token (median) "
          "| vs plain: engine median, best; CPU/token |")
    print("| --- | ---: | ---: | ---: | ---: |")
    med = {m: [statistics.median(r[i] for r in rs) for i in range(3)] for m, rs in rows.items()}
    best = {m: [max(r[i] for r in rs) for i in range(2)] for m, rs in rows.items()}
    for mode in rows:
        e, w, c = med[mode]
        print(f"| {mode} | {e:.1f}, {best[mode][0]:.1f} | {w:.1f}, {best[mode][1]:.1f} | {c:.1f} "
              f"| {e / med['plain'][0]:.3f}x, {best[mode][0] / best['plain'][0]:.3f}x; "
              f"{c / med['plain'][2]:.3f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--micro", action="store_true", help="time the buffering path alone (no model)")
    a = ap.parse_args()
    if a.micro:
        micro()
        return 0
    proc, url = start_server(a.model, a.threads)
    body = {"prompt": PROMPT, "stream": True, "max_tokens": a.tokens, "temperature": 0, "ignore_eos": True,
            "cache_prompt": False}
    rows: dict[str, list[tuple[float, float, float]]] = {"plain": [], "attached": [], "detached": []}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            run_connected(client, {**body, "max_tokens": 8}, {})  # warm up
            for rep in range(a.reps):
                for mode, out in rows.items():
                    c0 = cpu_seconds(proc.pid)
                    timings, wall = run(mode, client, url, body, rep)
                    n = timings["predicted_n"]
                    out.append((timings["predicted_per_second"], n / wall, 1e3 * (cpu_seconds(proc.pid) - c0) / n))
                    print(f"rep {rep} {mode:8s} engine {out[-1][0]:6.1f} t/s   wall {out[-1][1]:6.1f} t/s   "
                          f"server CPU {out[-1][2]:5.1f} ms/token", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    report(a, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
