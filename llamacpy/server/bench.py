"""Aggregate generation speed of the server at several slot counts.

    python -m llamacpy.server.bench -m smollm2-135m-instruct --slots 1,4 --requests 8 --tokens 128

For each slot count a server process is started; `--requests` streaming chat requests (different
prompts, `ignore_eos` so each generates exactly `--tokens` tokens) are sent at once, and the aggregate
is generated tokens / wall time from the first request to the last token.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOPICS = ["the sea", "mountains", "a city at night", "an old library", "a robot", "winter", "a garden", "trains"]


def _start(model: str, slots: int, ctx: int, threads: int | None) -> tuple[subprocess.Popen, str, Path]:
    log = Path(tempfile.mkstemp(prefix="llamacpy-bench-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "llamacpy", "server", "-m", model, "--port", "0", "-np", str(slots),
           "-c", str(ctx * slots)] + (["-t", str(threads)] if threads else [])
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    while proc.poll() is None:
        text = log.read_text()
        port = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
        if port and "ready in" in text:
            return proc, f"http://127.0.0.1:{port.group(1)}", log
        time.sleep(0.2)
    raise RuntimeError(log.read_text())


async def _one(client: httpx.AsyncClient, i: int, tokens: int) -> int:
    body = {"messages": [{"role": "user", "content": f"Write a story about {TOPICS[i % len(TOPICS)]}."}],
            "max_tokens": tokens, "ignore_eos": True, "temperature": 0.8, "seed": i, "stream": True,
            "stream_options": {"include_usage": True}}
    n = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith('data: {"') and '"usage":{' in line:
                n = int(re.search(r'"completion_tokens":(\d+)', line).group(1))
    return n


async def _measure(url: str, requests: int, tokens: int) -> tuple[int, float]:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        await _one(client, 0, 4)  # warm: first-use costs are not throughput
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(_one(client, i, tokens) for i in range(requests)))
        return sum(counts), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default="smollm2-135m-instruct")
    p.add_argument("--slots", default="1,4", help="comma-separated slot counts (default: 1,4)")
    p.add_argument("--requests", type=int, default=8, help="concurrent requests (default: 8)")
    p.add_argument("--tokens", type=int, default=128, help="tokens generated per request (default: 128)")
    p.add_argument("--ctx", type=int, default=512, help="context per slot (default: 512)")
    p.add_argument("-t", "--threads", type=int, default=None)
    a = p.parse_args(argv)
    print(f"{a.model}: {a.requests} concurrent requests x {a.tokens} tokens")
    for slots in (int(s) for s in a.slots.split(",")):
        proc, url, log = _start(a.model, slots, a.ctx, a.threads)
        try:
            n, seconds = asyncio.run(_measure(url, a.requests, a.tokens))
        finally:
            proc.terminate()
            proc.wait(30)
            log.unlink()
        print(f"  {slots} slot(s): {n} tokens in {seconds:.1f} s = {n / seconds:.1f} tokens/s aggregate", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
