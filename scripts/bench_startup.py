"""Seconds from launching a server to its first 200 on /health, cold (an empty numba cache) and warm (the cache
that cold run filled), for llamacpy and, with LLAMA_SERVER set, llama-server on the same GGUF.

    python3 scripts/bench_startup.py [MODEL] [--runs N]     # MODEL: a catalog name or a path (default smollm2)
    LLAMA_SERVER=/path/to/bin/llama-server python3 scripts/bench_startup.py ...

Each launch is a fresh process on a free port (the next waits for a cold start's background compile to end);
the numba cache goes to a temporary folder through NUMBA_CACHE_DIR, so the user's cache is not touched. Then
one short completion is timed too (a server that is "ready" but compiles on the first request would show it
there). Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llamacpy.catalog import resolve_model
from llamacpy.engine import precompile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until_ready(proc: subprocess.Popen, port: int, t0: float, limit: float = 600.0) -> float:
    while time.perf_counter() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise TimeoutError("not ready in time")


def first_reply(port: int) -> float:
    body = json.dumps({"prompt": "The capital of France is", "n_predict": 8, "temperature": 0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()
    return time.perf_counter() - t0


def launch(cmd: list[str], env: dict) -> tuple[float, float]:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ready = until_ready(proc, port, t0)
        return ready, first_reply(port)
    finally:
        proc.terminate()
        proc.wait(30)
        while precompile.compiling():  # the next launch starts on a quiet machine
            time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="smollm2-135m-instruct")
    p.add_argument("--runs", type=int, default=2, help="warm launches after the cold one")
    a = p.parse_args()
    path = str(resolve_model(a.model))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        ours = [sys.executable, "-m", "llamacpy", "server", "-m", path, "-c", "4096"]
        rows = [("llamacpy cold (empty numba cache)", *launch(ours, env))]
        rows += [(f"llamacpy warm #{i + 1}", *launch(ours, env)) for i in range(a.runs)]
    if os.environ.get("LLAMA_SERVER"):
        bin_dir = str(Path(os.environ["LLAMA_SERVER"]).parent)
        env = {**os.environ, "LD_LIBRARY_PATH": bin_dir}
        rows += [(f"llama-server #{i + 1}", *launch([os.environ["LLAMA_SERVER"], "-m", path, "-c", "4096"], env))
                 for i in range(a.runs)]
    print(f"model: {Path(path).name}")
    print("| launch | to ready (s) | first /completion, 8 tokens (s) |\n| --- | ---: | ---: |")
    for name, ready, reply in rows:
        print(f"| {name} | {ready:.2f} | {reply:.2f} |")


if __name__ == "__main__":
    main()
