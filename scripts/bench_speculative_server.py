"""The server's generation speed with and without a draft model: one slot, greedy, code prompts.

    python scripts/bench_speculative_server.py [-m qwen2.5-coder-1.5b-instruct] [-md qwen2.5-coder-0.5b-instruct]
        [-n 96] [--rounds 2]

Both servers run side by side (one idle while the other generates); requests alternate plain, draft,
draft, plain per prompt so a change in the machine's load hits both alike. tg t/s is the reply's
`timings.predicted_per_second` (first token to last). The replies must be the same text (checked).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serverkit import LlamacpyServer

PROMPTS = {
    "merge_sort": "def merge_sort(items: list[int]) -> list[int]:\n    \"\"\"Sort a list with merge sort.\"\"\"\n",
    "linked_list": "// A singly linked list in C\n#include <stdio.h>\n#include <stdlib.h>\n\ntypedef struct Node {\n",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", default="qwen2.5-coder-1.5b-instruct")
    p.add_argument("-md", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("-n", type=int, default=96)
    p.add_argument("--rounds", type=int, default=1, help="plain, draft, draft, plain sequences per prompt")
    a = p.parse_args()
    flags = ("-m", a.m, "-np", "1", "-c", "1024")
    servers = {"plain": LlamacpyServer(*flags), "draft": LlamacpyServer(*flags, "-md", a.md)}
    try:
        ratios = []
        for name, prompt in PROMPTS.items():
            tps: dict[str, list[float]] = {"plain": [], "draft": []}
            texts, drafted, accepted = set(), 0, 0
            for kind in ["plain", "draft", "draft", "plain"] * a.rounds:
                with servers[kind].client(timeout=600) as c:
                    r = c.post("/completion", json={"prompt": prompt, "n_predict": a.n, "temperature": 0,
                                                    "ignore_eos": True}).json()
                t = r["timings"]
                tps[kind].append(t["predicted_per_second"])
                texts.add(r["content"])
                drafted += t.get("draft_n", 0)
                accepted += t.get("draft_n_accepted", 0)
            plain, draft = statistics.fmean(tps["plain"]), statistics.fmean(tps["draft"])
            ratios.append(draft / plain)
            print(f"{name}: plain {plain:.2f} t/s, draft {draft:.2f} t/s, ratio {draft / plain:.2f}, "
                  f"drafted {drafted}, accepted {accepted} ({100 * accepted / max(drafted, 1):.1f}%), "
                  f"same text: {len(texts) == 1}")
        print(f"geomean ratio {statistics.geometric_mean(ratios):.2f}")
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
