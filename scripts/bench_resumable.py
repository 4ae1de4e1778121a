"""Generation speed of a resumable stream (X-Conversation-Id) against the same stream without the header.

    python scripts/bench_resumable.py [--model smollm2-135m-instruct] [--tokens 256] [--reps 5] [--threads N]

Starts one server (one slot), then runs the same greedy /v1/completions stream in three modes, interleaved
rep by rep so that load on a shared machine hits every mode alike:

    plain      no header: the generation writes straight to a connected client
    attached   with the header, the client connected throughout (it reads the replay buffer)
    detached   with the header, the client hangs up after the response headers; the generation runs on,
               and its end is found by polling /v1/streams/lookup

Reported per mode (medians): the engine's own tokens/s (`timings.predicted_per_second`, from the first
sampled token to the last, on the engine thread - buffering shows up here if it steals the GIL) and the
wall-clock tokens/s from the first response byte to the end of the stream. The criterion: the resumable
modes reach >= 0.95x the plain mode's tokens/s.
"""

from __future__ import annotations

import argparse
import json
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
        time.sleep(0.01)
    replay = client.get(f"/v1/stream/{cid}").content
    client.delete(f"/v1/stream/{cid}")
    return last_timings(replay), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    proc, url = start_server(a.model, a.threads)
    body = {"prompt": PROMPT, "stream": True, "max_tokens": a.tokens, "temperature": 0, "ignore_eos": True,
            "cache_prompt": False}
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "attached": [], "detached": []}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            run_connected(client, {**body, "max_tokens": 8}, {})  # warm up
            for rep in range(a.reps):
                for mode, rows in results.items():
                    if mode == "plain":
                        timings, wall = run_connected(client, body, {})
                    elif mode == "attached":
                        timings, wall = run_connected(client, body, {"X-Conversation-Id": f"bench-a{rep}"})
                    else:
                        timings, wall = run_detached(client, url, body, f"bench-d{rep}")
                    rows.append((timings["predicted_per_second"], timings["predicted_n"] / wall))
                    print(f"rep {rep} {mode:8s} engine {rows[-1][0]:6.1f} t/s   wall {rows[-1][1]:6.1f} t/s",
                          file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    base_engine = statistics.median(r[0] for r in results["plain"])
    base_wall = statistics.median(r[1] for r in results["plain"])
    print(f"\n{a.tokens} tokens, {a.reps} reps, model {a.model}, 1 slot\n")
    print("| mode | engine t/s | vs plain | wall t/s | vs plain |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode, rows in results.items():
        engine = statistics.median(r[0] for r in rows)
        wall = statistics.median(r[1] for r in rows)
        print(f"| {mode} | {engine:.1f} | {engine / base_engine:.3f}x | {wall:.1f} | {wall / base_wall:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
