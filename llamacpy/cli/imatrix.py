"""`llamacpy imatrix -m M -f TEXT [-o imatrix.gguf]`: llama-imatrix's importance matrix, for `quantize --imatrix`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .options import add_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("-f", "--file", help="calibration text file (without it: only combine the --in-file matrices)")
    p.add_argument("--in-file", action="append", default=[], metavar="FNAME",
                   help="add a precomputed imatrix (GGUF or legacy .dat) to the result; repeatable")
    p.add_argument("-o", "--output", "--output-file", dest="output", default="imatrix.gguf",
                   help="output file (default: imatrix.gguf)")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default: 512)")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="tokens per batch (default: 512)")
    p.add_argument("--chunks", type=int, default=-1, help="max chunks to process (default: -1 = all)")
    p.add_argument("--chunk", "--from-chunk", dest="from_chunk", type=int, default=0,
                   help="start processing the input from chunk N (default: 0)")
    p.add_argument("-ofreq", "--output-frequency", dest="out_freq", type=int, default=10,
                   help="write the imatrix every N chunks (default: 10)")
    p.add_argument("--save-frequency", type=int, default=0,
                   help="save a copy OUTPUT.at_N every N chunks (default: 0 = never)")
    p.add_argument("--process-output", action="store_true", help="collect data for the output tensor too")
    p.add_argument("--ppl", dest="ppl", action="store_true", default=True,
                   help="print the perplexity of each chunk (default)")
    p.add_argument("--no-ppl", dest="ppl", action="store_false", help="do not print the perplexity")
    p.add_argument("--parse-special", action="store_true", help="parse special tokens in the text")
    p.add_argument("--show-statistics", action="store_true",
                   help="print the statistics of the one --in-file matrix and exit")
    p.add_argument("--output-format", choices=["gguf", "dat"], default="gguf",
                   help="output format: gguf (default) or llama.cpp's legacy dat")


def run(a: argparse.Namespace) -> int:
    from ..api import Llama
    from ..engine.imatrix import ImatrixCollector, compute_imatrix
    from ..quantize.imatrix_file import load, save

    if a.ctx_size <= 0:
        raise ValueError("imatrix needs --ctx-size > 0")
    if a.out_freq <= 0:
        raise ValueError("--output-frequency must be positive")
    collector = ImatrixCollector(a.ctx_size, a.process_output)
    if a.show_statistics:
        from ..engine.imatrix_stats import report

        if len(a.in_file) != 1:
            raise ValueError("a single imatrix file (--in-file) is required to compute tensor statistics")
        collector.merge(load(a.in_file[0]))
        print(report(a.in_file[0], collector.sums, collector.counts), end="")
        return 0
    for path in a.in_file:
        print(f"imatrix: loading imatrix from '{path}'", file=sys.stderr)
        collector.merge(load(path))
    if not a.file:
        if not a.in_file:
            raise ValueError("no text (-f) and no precomputed matrices (--in-file) to combine")
        save(a.output, collector.imatrix([]), a.output_format == "dat", last_chunk=0)  # nothing collected
        print(f"imatrix: saved {'combined ' if len(a.in_file) > 1 else ''}imatrix to '{a.output}'", file=sys.stderr)
        return 0
    text = Path(a.file).read_text(encoding="utf-8")
    llm = Llama(a.model, n_ctx=a.ctx_size, n_threads=a.threads, n_batch=a.batch_size)
    tok = llm.tokenizer
    t0 = time.perf_counter()
    tokens = tok.encode(text, add_special=True, parse_special=a.parse_special)
    print(f"imatrix: tokenizing the input .. done in {time.perf_counter() - t0:.2f} s ({len(tokens)} tokens)",
          file=sys.stderr)
    n_ctx = a.ctx_size
    if a.from_chunk > 0:
        if (a.from_chunk + 2) * n_ctx >= len(tokens):
            raise ValueError(f"there will be not enough tokens left after removing {a.from_chunk} chunks")
        tokens = tokens[a.from_chunk * n_ctx:]
    n_max = len(tokens) // n_ctx
    n_chunk = n_max if a.chunks < 0 else min(a.chunks, n_max)
    print(f"imatrix: computing over {n_chunk} chunks, n_ctx={n_ctx}, batch_size={min(a.batch_size, n_ctx)}, "
          f"n_seq=1", file=sys.stderr)
    t_start = time.perf_counter()

    def on_chunk(i: int, n: int, ppl: float) -> None:
        if i == 0:
            per = time.perf_counter() - t_start
            print(f"imatrix: {per:.2f} seconds per pass - ETA {per * n / 60:.2f} minutes", file=sys.stderr)
        if a.ppl:
            print(f"[{i + 1}]{ppl:.4f},", end="", flush=True)
        else:
            print(f"[{i + 1}/{n}]", end=" ", file=sys.stderr, flush=True)

    bos = tok.bos_id if tok.add_bos else None
    collector, res = compute_imatrix(llm.model, tokens, n_ctx, a.output, [a.file], a.chunks, a.batch_size, bos,
                                     a.out_freq, a.save_frequency, on_chunk, collector,
                                     legacy=a.output_format == "dat")
    print()
    for name, share in collector.partial():
        print(f"imatrix: entry '{name:>40}' has partial data ({100 * share:.2f}%)", file=sys.stderr)
    if a.ppl:
        print(f"Final estimate: PPL = {res.ppl:.4f} +/- {res.stderr:.5f}")
    print(f"imatrix: stored collected data after {collector.chunk_count} chunks in {a.output} "
          f"({len(collector.sums)} entries)", file=sys.stderr)
    return 0
