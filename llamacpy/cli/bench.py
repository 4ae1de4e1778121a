"""`llamacpy bench -m M [-m M2] -p 512 -n 128 [-pg 512,128] [-d 0,2048] -t 1,2 -r 3 [-o md|json]`: llama-bench's
tests and table.

pp<N>: a prompt of N random tokens processed in batches of -b; tg<N>: N tokens decoded one at a time;
pp<N>+tg<M> (-pg N,M): both in one run, t/s counting N + M tokens; " @ d<D>" (-d D): each test runs after D
tokens of context were processed (not timed), as llama-bench's --n-depth.
Each test runs once as warm-up, then -r times; t/s is reported as mean ± standard deviation.
Tokenization and sampling are not timed, as in llama-bench.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..gguf import GGUFFile

FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def pair_list(text: str) -> tuple[int, int]:
    """llama-bench's -pg <pp,tg>."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected <pp,tg>, got {text!r}")
    return int(parts[0]), int(parts[1])


def cache_type_list(text: str) -> list[str]:
    """llama-bench's -ctk/-ctv: comma-separated KV cache types, each checked."""
    from ..ops.kv_quant import cache_type

    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    for name in names:
        try:
            cache_type(name)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", action="append", help="model path or catalog name; repeatable")
    p.add_argument("-p", "--n-prompt", type=int_list, default=[512], help="prompt sizes (default: 512)")
    p.add_argument("-n", "--n-gen", type=int_list, default=[128], help="generation sizes (default: 128)")
    p.add_argument("-pg", dest="n_pg", type=pair_list, action="append", default=[], metavar="PP,TG",
                   help="prompt + generation tests, repeatable (default: none)")
    p.add_argument("-d", "--n-depth", type=int_list, default=[0], help="context depths (default: 0)")
    p.add_argument("-t", "--threads", type=int_list, default=None, help="thread counts (default: physical cores)")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt batch size (default: 512)")
    p.add_argument("-ctk", "--cache-type-k", type=cache_type_list, default=["f16"], metavar="TYPES",
                   help="KV cache types for K, comma separated (default: f16)")
    p.add_argument("-ctv", "--cache-type-v", type=cache_type_list, default=["f16"], metavar="TYPES",
                   help="KV cache types for V, comma separated (default: f16)")
    p.add_argument("-r", "--repetitions", type=int, default=5, help="repetitions (default: 5)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up run")
    p.add_argument("-o", "--output", choices=("md", "json"), default="md", help="output format (default: md)")


@dataclass
class BenchResult:
    model_filename: str
    model_type: str
    model_size: int
    model_n_params: int
    n_threads: int
    n_prompt: int
    n_gen: int
    samples_ts: list[float]
    type_k: str = "f16"
    type_v: str = "f16"
    n_depth: int = 0

    @property
    def test(self) -> str:
        name = f"pp{self.n_prompt}+tg{self.n_gen}" if self.n_prompt and self.n_gen else \
            f"pp{self.n_prompt}" if self.n_prompt else f"tg{self.n_gen}"
        return name + (f" @ d{self.n_depth}" if self.n_depth else "")

    @property
    def avg_ts(self) -> float:
        return statistics.fmean(self.samples_ts)

    @property
    def stddev_ts(self) -> float:
        return statistics.stdev(self.samples_ts) if len(self.samples_ts) > 1 else 0.0


def describe(g: GGUFFile) -> tuple[str, int, int]:
    """(llama-bench's model column, tensor bytes, parameter count)."""
    size = sum(t.data.nbytes for t in g.tensors.values())
    params = sum(t.n_elements for t in g.tensors.values())
    label = g.get("general.size_label") or (f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M")
    ftype = FILE_TYPES.get(int(g.get("general.file_type", -1)), "?")
    return f"{g.architecture} {label} {ftype}", size, params


def run_test(model, n_vocab: int, n_prompt: int, n_gen: int, n_batch: int, cache_types: tuple = (),
             n_depth: int = 0) -> float:
    """Seconds for one run of the test on a fresh cache (of `cache_types`, names of type_k and type_v): the
    prompt, then the generated tokens, after n_depth tokens of context (not timed)."""
    from ..engine import Sequence
    from ..ops.kv_quant import cache_type

    rng = np.random.default_rng(0)
    cache = model.new_cache(n_depth + n_prompt + n_gen + 1, 1, False, *map(cache_type, cache_types))
    seq = Sequence(model, cache, n_batch=n_batch)
    if n_depth:
        seq.feed(rng.integers(0, n_vocab, n_depth).tolist())
    tokens = rng.integers(0, n_vocab, n_prompt).tolist()
    token = int(rng.integers(0, n_vocab))
    t0 = time.perf_counter()
    if n_prompt:
        logits = seq.feed(tokens)
        token = int(np.argmax(logits))
    for _ in range(n_gen):
        logits = seq.feed([token])
        token = int(np.argmax(logits))
    return time.perf_counter() - t0


def bench_model(path, a: argparse.Namespace) -> list[BenchResult]:
    from ..kernels import set_num_threads
    from ..models import load_model

    g = GGUFFile(path)
    model = load_model(g)
    name, size, params = describe(g)
    results = []
    for threads in a.threads or [None]:
        used = set_num_threads(threads)
        tests = [(p, 0) for p in a.n_prompt if p > 0] + [(0, n) for n in a.n_gen if n > 0] + \
            [pg for pg in a.n_pg if pg != (0, 0)]
        types = [(k, v) for k in a.cache_type_k for v in a.cache_type_v]
        for kv, depth, (n_prompt, n_gen) in ((kv, d, t) for kv in types for d in a.n_depth for t in tests):
            args = (model, model.args.n_vocab, n_prompt, n_gen, a.batch_size, kv, depth)
            if not a.no_warmup:
                run_test(*args)
            samples = [(n_prompt + n_gen) / run_test(*args) for _ in range(a.repetitions)]
            r = BenchResult(str(path), name, size, params, used, n_prompt, n_gen, samples, *kv, depth)
            results.append(r)
            if a.output == "md":
                print_row(r, kv_columns(a))
    return results


def fmt_size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def kv_columns(a: argparse.Namespace) -> list[str]:
    """llama-bench's optional columns: type_k / type_v once one of them is not f16."""
    return [c for c, names in (("type_k", a.cache_type_k), ("type_v", a.cache_type_v)) if names != ["f16"]]


def header(extra: list[str]) -> str:
    cols = "".join(f" {c:>6} |" for c in extra)
    return (f"| {'model':<30} | {'size':>10} | {'params':>10} | {'backend':<10} | {'threads':>7} |{cols} "
            f"{'test':>15} | {'t/s':>20} |\n"
            f"| {'-' * 30} | {'-' * 9}: | {'-' * 9}: | {'-' * 10} | {'-' * 6}: |{' -----: |' * len(extra)} "
            f"{'-' * 14}: | {'-' * 19}: |")


def print_row(r: BenchResult, extra: list[str] = ()) -> None:
    ts = f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"
    cols = "".join(f" {getattr(r, c):>6} |" for c in extra)
    print(f"| {r.model_type:<30} | {fmt_size(r.model_size):>10} | {fmt_params(r.model_n_params):>10} | "
          f"{'CPU':<10} | {r.n_threads:>7} |{cols} {r.test:>15} | {ts:>20} |", flush=True)


def run(a: argparse.Namespace) -> int:
    from .. import __version__
    from ..catalog import resolve_model

    paths = [resolve_model(m) for m in (a.model or [None])]
    if a.output == "md":
        print(header(kv_columns(a)))
    results = [r for p in paths for r in bench_model(p, a)]
    if a.output == "md":
        print(f"\nbuild: llamacpy {__version__}")
    else:
        json.dump([{**asdict(r), "avg_ts": r.avg_ts, "stddev_ts": r.stddev_ts} for r in results], sys.stdout,
                  indent=2)
        print()
    return 0
