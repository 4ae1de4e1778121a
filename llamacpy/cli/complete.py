"""`llamacpy complete -m M -p TEXT -n N`: print only the continuation, streamed (llama-completion)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .options import (
    add_draft,
    add_model,
    add_runtime,
    add_sampling,
    draft_kwargs,
    load_llama,
    sampling_kwargs,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-p", "--prompt", help="prompt text")
    src.add_argument("-f", "--file", help="read the prompt from a file")
    p.add_argument("-n", "--n-predict", type=int, default=-1, help="tokens to generate (default: -1 = until EOS)")
    p.add_argument("-r", "--reverse-prompt", action="append", default=[], help="stop at this text; repeatable")
    p.add_argument("--perf", action="store_true", help="print timings to stderr at the end")
    add_runtime(p)
    add_sampling(p)
    add_draft(p)


def run(a: argparse.Namespace) -> int:
    prompt = a.prompt if a.prompt is not None else Path(a.file).read_text(encoding="utf-8")
    llm = load_llama(a, **draft_kwargs(a))
    tokens = llm.tokenize(prompt, add_special=True, parse_special=True)
    t0 = time.perf_counter()
    t_first = None
    n = 0
    kw = sampling_kwargs(a)
    for piece in llm.stream_tokens(tokens, a.n_predict, stop=a.reverse_prompt, ignore_eos=a.ignore_eos, **kw):
        if t_first is None:
            t_first = time.perf_counter()
        n += piece.token is not None
        sys.stdout.write(piece.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if a.perf and t_first is not None:
        t_end = time.perf_counter()
        print(f"prompt: {len(tokens)} tokens in {t_first - t0:.2f} s ({len(tokens) / (t_first - t0):.1f} t/s); "
              f"generated: {n} tokens in {t_end - t_first:.2f} s ({max(n - 1, 0) / max(t_end - t_first, 1e-9):.1f} t/s)",
              file=sys.stderr)
    if llm.drafter is not None:
        print(llm.draft_stats.summary(), file=sys.stderr)
    return 0
