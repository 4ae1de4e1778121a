"""`llamacpy perplexity -m M -f FILE -c CTX --chunks N`: llama-perplexity's method and output lines."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..ops.kv_quant import cache_type
from .options import add_model, add_runtime


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("-f", "--file", required=True, help="text file to score")
    p.add_argument("--chunks", type=int, default=-1, help="max chunks to process (default: -1 = all)")
    add_runtime(p, ctx_default=512)


def run(a: argparse.Namespace) -> int:
    from ..engine.perplexity import perplexity

    text = Path(a.file).read_text(encoding="utf-8")
    llm = _load(a)
    tok = llm.tokenizer
    t0 = time.perf_counter()
    tokens = tok.encode(text, add_special=True, parse_special=False)
    print(f"perplexity: tokenizing the input .. done in {time.perf_counter() - t0:.2f} s ({len(tokens)} tokens)",
          file=sys.stderr)
    n_ctx = a.ctx_size
    n_chunk = len(tokens) // n_ctx if a.chunks < 0 else min(a.chunks, len(tokens) // n_ctx)
    batch = min(a.batch_size, n_ctx)
    print(f"perplexity: calculating perplexity over {n_chunk} chunks, n_ctx={n_ctx}, batch_size={batch}, n_seq=1",
          file=sys.stderr)
    t_start = time.perf_counter()

    def on_chunk(i: int, n: int, value: float) -> None:
        if i == 0:
            per = time.perf_counter() - t_start
            print(f"perplexity: {per:.2f} seconds per pass - ETA {per * n / 60:.2f} minutes", file=sys.stderr)
        print(f"[{i + 1}]{value:.4f},", end="", flush=True)

    bos = tok.bos_id if tok.add_bos else None
    res = perplexity(llm.model, tokens, n_ctx, a.chunks, a.batch_size, bos, on_chunk,
                     (cache_type(a.cache_type_k), cache_type(a.cache_type_v)))
    print()
    print(f"Final estimate: PPL = {res.ppl:.4f} +/- {res.stderr:.5f}")
    return 0


def _load(a: argparse.Namespace):
    from ..api import Llama

    return Llama(a.model, n_ctx=a.ctx_size, n_threads=a.threads, n_batch=a.batch_size)
