"""Embedding server throughput: all-MiniLM-L6-v2 behind `llamacpy server --embeddings`, with 1 and 2 kernel
threads fixed and with the thread tuner (no -t), quiet and with a busy process beside it (`--busy`).

    python scripts/bench_embeddings.py [--model all-minilm-l6-v2] [--n 200] [--busy]

Prints embeddings/s for one sentence per request (sequential requests) and for one request of all sentences.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import socket
import subprocess
import sys
import time

import httpx

WORDS = ["the", "a", "man", "woman", "dog", "cat", "eats", "runs", "reads", "quickly", "slowly", "bread", "food", "park", "river", "city", "bright", "dark", "old", "new", "music", "plays", "under", "over", "near", "house", "garden", "morning", "evening"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(7, 12))).capitalize() + "." for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spin() -> None:
    while True:
        pass


def run_server(model: str, threads: str | None, texts: list[str]) -> tuple[float, float]:
    port = free_port()
    argv = [sys.executable, "-m", "llamacpy", "server", "-m", model, "--embeddings", "--port", str(port)]
    if threads:
        argv += ["-t", threads]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for _ in range(600):
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            for text in texts[:20]:  # warm up (and let the tuner settle)
                http.post("/v1/embeddings", json={"input": text})
            t0 = time.perf_counter()
            for text in texts:
                assert http.post("/v1/embeddings", json={"input": text}).status_code == 200
            one = len(texts) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert http.post("/v1/embeddings", json={"input": texts}).status_code == 200
            batched = len(texts) / (time.perf_counter() - t0)
        return one, batched
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--busy", action="store_true", help="run one CPU-bound process alongside")
    args = ap.parse_args()
    texts = sentences(args.n)
    hog = multiprocessing.Process(target=spin, daemon=True) if args.busy else None
    if hog:
        hog.start()
    try:
        print(f"| threads | one sentence per request | {args.n} sentences in one request |{' (busy)' if hog else ''}")
        for threads in ("1", "2", None):
            one, batched = run_server(args.model, threads, texts)
            print(f"| {threads or 'tuner'} | {one:.1f}/s | {batched:.1f}/s |", flush=True)
    finally:
        if hog:
            hog.terminate()


if __name__ == "__main__":
    main()
