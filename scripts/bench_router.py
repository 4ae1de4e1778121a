"""What the router costs: the same streamed generation through a router and straight from a model server.

    python scripts/bench_router.py [-m smollm2-135m-instruct] [-n 256] [-r 6] [-t 2]

A child server answers only its router (a per-child secret), so "straight" is a plain `llamacpy server`
started with the child's own flags: the same program, model and settings. Both run side by side; each rep
sends one greedy `/v1/completions` stream of exactly N tokens (ignore_eos, no prompt cache) to each, in
alternating order. Reported: client-side tokens/s from the first to the last token (median and best), the
server's own `predicted_per_second`, and the router process's CPU time per token. Run it on a quiet machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's package, whatever an editable install elsewhere points to
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import json
import statistics
import tempfile
import time

import httpx


def one_stream(url: str, model: str, n: int) -> tuple[float, float]:
    """(client tokens/s first token -> last, server predicted_per_second)."""
    body = {"model": model, "prompt": "Once upon a time", "max_tokens": n, "ignore_eos": True, "stream": True,
            "temperature": 0, "cache_prompt": False}
    first = last = None
    tokens, server_tps = 0, 0.0
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event["choices"] and event["choices"][0].get("text"):
                now = time.perf_counter()
                first = first or now
                last = now
                tokens += 1
            if "timings" in event:
                server_tps = event["timings"]["predicted_per_second"]
    return (tokens - 1) / (last - first), server_tps


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks (100/s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default="smollm2-135m-instruct")
    ap.add_argument("-n", "--n-gen", type=int, default=256)
    ap.add_argument("-r", "--repetitions", type=int, default=6)
    ap.add_argument("-t", "--threads", type=int, default=2)
    a = ap.parse_args()
    from routerkit import RouterProcess, models_dir  # tests/ is on the path
    from serverkit import ServerProcess

    from llamacpy.catalog import resolve_model

    path = resolve_model(a.model)
    flags = ["-c", "2048", "-np", "1", "-t", str(a.threads)]
    root = Path(tempfile.mkdtemp(prefix="bench-router-"))
    direct = ServerProcess(path, *flags)
    router = RouterProcess("--models-dir", str(models_dir(root, {"m": path})), *flags)
    try:
        router.http.post("/models/load", json={"model": "m"})
        router.wait_status("m", "loaded")
        for url, model in ((direct.url, "x"), (router.url, "m")):  # warm-up
            one_stream(url, model, 16)
        rows: dict[str, list[tuple[float, float]]] = {"direct": [], "router": []}
        router_cpu = 0.0
        for rep in range(a.repetitions):
            order = ["direct", "router"] if rep % 2 == 0 else ["router", "direct"]
            for mode in order:
                if mode == "direct":
                    rows[mode].append(one_stream(direct.url, "x", a.n_gen))
                else:
                    c0 = cpu_seconds(router.proc.pid)
                    rows[mode].append(one_stream(router.url, "m", a.n_gen))
                    router_cpu += cpu_seconds(router.proc.pid) - c0
    finally:
        router.stop()
        direct.stop()
    print(f"{a.model}, {a.n_gen} tokens x {a.repetitions} reps, -t {a.threads}\n")
    print("| path | client t/s median (best) | server t/s median | vs direct (median / best) |")
    print("| --- | ---: | ---: | ---: |")
    base = rows["direct"]
    for mode, samples in rows.items():
        client = [c for c, _ in samples]
        server = [s for _, s in samples]
        ratio = statistics.median(client) / statistics.median(c for c, _ in base)
        best = max(client) / max(c for c, _ in base)
        print(f"| {mode} | {statistics.median(client):.1f} ({max(client):.1f}) | {statistics.median(server):.1f} | "
              f"{ratio:.3f} / {best:.3f} |")
    print(f"\nrouter process CPU: {1000 * router_cpu / (a.repetitions * a.n_gen):.3f} ms per token relayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
