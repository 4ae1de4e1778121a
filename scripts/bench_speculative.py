"""Token generation of a target model with and without a draft model, greedy, on code prompts.

    python scripts/bench_speculative.py [-m qwen2.5-coder-1.5b-instruct] [-md qwen2.5-coder-0.5b-instruct]
        [-n 128] [-t THREADS] [--draft-max 16] [--draft-p-min 0.75]

For each prompt: plain and speculative runs alternate (plain, draft, draft, plain) so that a change in the
machine's load hits both alike; tg t/s = generated tokens / time from the first token to the last (as
`llamacpy complete --perf`). The outputs must be the same tokens (checked). Prints the t/s of each, the
ratio, and the draft's acceptance.
"""

from __future__ import annotations

import argparse
import statistics
import time

from llamacpy import Llama
from llamacpy.engine import GenerationParams, generate
from llamacpy.engine.speculative import DraftStats
from llamacpy.sampling import Sampler, SamplingParams

PROMPTS = {
    "merge_sort": "def merge_sort(items: list[int]) -> list[int]:\n    \"\"\"Sort a list with merge sort.\"\"\"\n",
    "http_server": "import json\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n\n\n"
                   "class Handler(BaseHTTPRequestHandler):\n    def do_GET(self):\n",
    "linked_list": "// A singly linked list in C\n#include <stdio.h>\n#include <stdlib.h>\n\ntypedef struct Node {\n",
}


def tg(llm: Llama, prompt: list[int], n: int, drafter) -> tuple[list[int], float, DraftStats]:
    llm.sequence.reset()
    stats = DraftStats()
    sampler = Sampler(SamplingParams(temperature=0.0), llm.model.args.n_vocab)
    tokens, t_first = [], 0.0
    for step in generate(llm.sequence, prompt, sampler, GenerationParams(n_predict=n, ignore_eos=True),
                         llm.tokenizer.eog_ids, drafter, stats):
        if not tokens:
            t_first = time.perf_counter()
        tokens.append(step.token)
    return tokens, (len(tokens) - 1) / (time.perf_counter() - t_first), stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", default="qwen2.5-coder-1.5b-instruct")
    p.add_argument("-md", "--model-draft", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("-n", "--n-predict", type=int, default=128)
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--draft-max", type=int, default=16)
    p.add_argument("--draft-p-min", type=float, default=0.75)
    a = p.parse_args()
    llm = Llama(a.model, n_ctx=1024, n_threads=a.threads, draft_model=a.model_draft, draft_max=a.draft_max,
                draft_p_min=a.draft_p_min, verbose=False)
    drafter = llm.drafter
    print(f"{a.model} with draft {a.model_draft}: {a.n_predict} tokens greedy, threads {a.threads or 'auto'}, "
          f"draft-max {a.draft_max}, draft-p-min {a.draft_p_min}")
    print("| prompt | plain tg t/s | with draft tg t/s | ratio | drafted | accepted | acceptance |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    total = DraftStats()
    ratios = []
    for name, text in PROMPTS.items():
        prompt = llm.tokenize(text)
        tg(llm, prompt, 8, drafter)  # warm both models' kernels and the draft's cache path
        plain, spec = [], []
        for order in ((None, drafter), (drafter, None)):
            for d in order:
                tokens, tps, stats = tg(llm, prompt, a.n_predict, d)
                (spec if d else plain).append(tps)
                if d:
                    spec_tokens, spec_stats = tokens, stats
                else:
                    plain_tokens = tokens
        assert spec_tokens == plain_tokens, f"{name}: the draft changed the output"
        total.n_drafted += spec_stats.n_drafted
        total.n_accepted += spec_stats.n_accepted
        tp, ts = statistics.fmean(plain), statistics.fmean(spec)
        ratios.append(ts / tp)
        print(f"| {name} | {tp:.2f} | {ts:.2f} | **{ts / tp:.2f}** | {spec_stats.n_drafted} | "
              f"{spec_stats.n_accepted} | {100 * spec_stats.acceptance:.1f}% |", flush=True)
    print(f"| all | | | **{statistics.geometric_mean(ratios):.2f}** (geomean) | {total.n_drafted} | "
          f"{total.n_accepted} | {100 * total.acceptance:.1f}% |")


if __name__ == "__main__":
    main()
