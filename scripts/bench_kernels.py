"""Throughput of the GGML kernels: fused GEMV (GB/s of weights), small-batch matmul, large matmul GFLOP/s.

    python scripts/bench_kernels.py [--types Q8_0,Q4_K] [--threads 2] [--shape 4096x4096] [--big 512]
    python scripts/bench_kernels.py --model ~/.cache/llamacpy/models/SmolLM2-135M-Instruct.Q4_1.gguf

Synthetic random blocks (random quant bits, sane f16 scales) of one shape per type. The machine is
shared: compare numbers from one run side by side, not across runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's package, whatever an editable install elsewhere points to
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import time

import numpy as np
from numba import njit, prange

from llamacpy.gguf import BLOCK_LAYOUT, GGMLType, Tensor
from llamacpy.kernels import WeightMatrix, dequantize, set_num_threads

TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"]
F16_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "Q2_K": (80, 82),
              "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}  # fmt: skip


def synthetic(name: str, n_out: int, n_in: int) -> Tensor:
    qtype = GGMLType[name]
    rng = np.random.default_rng(0)
    if name in ("F32", "F16", "BF16"):
        w = rng.standard_normal((n_out, n_in)).astype(np.float32)
        raw = {"F32": w, "F16": w.astype(np.float16), "BF16": (w.view(np.uint32) >> 16).astype(np.uint16)}[
            name
        ]
        return Tensor(name, qtype, (n_out, n_in), raw.view(np.uint8).reshape(n_out, -1))
    elems, nbytes = BLOCK_LAYOUT[qtype]
    data = rng.integers(0, 256, (n_out, n_in // elems * nbytes), dtype=np.uint8)
    blocks = data.reshape(-1, nbytes)
    for off in F16_FIELDS[name]:
        blocks[:, off : off + 2] = (
            rng.uniform(-0.05, 0.05, (len(blocks), 1)).astype(np.float16).view(np.uint8)
        )
    return Tensor(name, qtype, (n_out, n_in), data)


def best_time(fn, min_time: float = 0.3, reps: int = 5) -> float:
    """Best per-call time over `reps` rounds of ~min_time/reps seconds each (best = least disturbed)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_time / reps / once))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def _read_words(words):
    """Sum of f32 words in chunks of 4 KiB: a plain read of the weights (the bandwidth baseline)."""
    n = words.shape[0] // 16
    total = 0.0
    for c in prange((n + 63) // 64):
        acc = np.zeros(16, np.float32)
        for i in range(c * 64, min(n, c * 64 + 64)):
            for j in range(16):
                acc[j] += words[i * 16 + j]
        total += acc.sum()
    return total


def _read_bytes(data: np.ndarray) -> float:
    flat = data.reshape(-1)
    return _read_words(flat[: flat.shape[0] // 64 * 64].view(np.float32))


def bench_model(path: str, batches: list[int]) -> None:
    """One product per weight matrix of a real model, as decoding does it (`WeightMatrix.mul`: activation
    quantization + integer vec_dot kernels), against a plain read of the same bytes."""
    from llamacpy.gguf import GGUFFile

    g = GGUFFile(path)
    names = [n for n, t in g.tensors.items() if len(t.shape) == 2 and n != "token_embd.weight"]
    if "output.weight" not in g.tensors:
        names.append("token_embd.weight")  # tied embeddings: the output projection
    mats = [WeightMatrix(g.tensors[n]) for n in names]
    rng = np.random.default_rng(0)
    nbytes = sum(w.nbytes for w in mats)
    by_type: dict[str, float] = {}
    for w in mats:
        by_type[w.type.name] = by_type.get(w.type.name, 0.0) + w.nbytes / 2**20
    mix = ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(by_type.items()))
    print(f"{path}: {len(mats)} matrices ({mix})")
    tr = best_time(lambda: [_read_bytes(w.data) for w in mats], min_time=1.0)
    print(f"  plain read  {tr * 1e3:.2f} ms, {nbytes / tr / 1e9:.2f} GB/s")
    t = 0.0
    for T in [1, *batches]:
        Xs = [rng.standard_normal((T, w.n_in)).astype(np.float32) for w in mats]
        tb = best_time(lambda Xs=Xs: [w.mul(X) for w, X in zip(mats, Xs, strict=True)], min_time=1.0)
        t = t or tb
        print(f"  mul T={T:<3} {tb * 1e3:.2f} ms = {tb / t:.2f}x T=1, {nbytes / tb / 1e9:.2f} GB/s, "
              f"{T / tb:.1f} tokens/s upper bound")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--threads", type=int, default=0, help="0 = physical cores")
    ap.add_argument("--shape", default="4096x4096", help="n_out x n_in")
    ap.add_argument("--batches", default="4,8,16", help="small-batch T values for the fused matmul")
    ap.add_argument("--big", type=int, default=512, help="T of the large (BLAS) matmul; 0 = skip")
    ap.add_argument("--model", help="time one GEMV per matrix of this GGUF instead")
    args = ap.parse_args()
    n_thr = set_num_threads(args.threads or None)
    if args.model:
        print(f"threads={n_thr}")
        bench_model(args.model, [int(v) for v in args.batches.split(",") if v])
        return
    n_out, n_in = (int(v) for v in args.shape.split("x"))
    batches = [int(v) for v in args.batches.split(",") if v]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n_in).astype(np.float32)
    out = np.empty(n_out, np.float32)
    print(f"threads={n_thr} shape={n_out}x{n_in}")
    head = f"{'type':>5} {'MiB':>6} {'matvec us':>9} {'GB/s':>6} {'deq GB/s':>8}"
    head += "".join(f" {'T=' + str(T) + ' x':>7}" for T in batches)
    head += f" {'T=' + str(args.big) + ' GF/s':>11}" if args.big else ""
    print(head + "   (T=k x: matmul time / one matvec time; deq GB/s of f32 written)")
    for name in args.types.split(","):
        t = synthetic(name, n_out, n_in)
        w = WeightMatrix(t)
        tv = best_time(lambda w=w: w.matvec(x, out))
        td = best_time(lambda t=t: dequantize(t), min_time=0.2, reps=3)
        line = f"{name:>5} {w.nbytes / 2**20:6.1f} {tv * 1e6:9.0f} {w.nbytes / tv / 1e9:6.2f} {n_out * n_in * 4 / td / 1e9:8.2f}"
        for T in batches:
            X = rng.standard_normal((T, n_in)).astype(np.float32)
            line += f" {best_time(lambda w=w, X=X: w.matmul(X)) / tv:7.2f}"
        if args.big:
            X = rng.standard_normal((args.big, n_in)).astype(np.float32)
            tb = best_time(lambda w=w, X=X: w.matmul(X), min_time=0.5, reps=3)
            line += f" {2 * args.big * n_out * n_in / tb / 1e9:11.1f}"
        print(line, flush=True)
    if args.big:
        W = rng.standard_normal((n_out, n_in)).astype(np.float32)
        X = rng.standard_normal((args.big, n_in)).astype(np.float32)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=n_thr, user_api="blas"):  # the kernels keep BLAS at 1 thread
            tb = best_time(lambda: X @ W.T, min_time=0.5, reps=3)
        gflops = 2 * args.big * n_out * n_in / tb / 1e9
        print(f"pure f32 BLAS X @ W.T on {n_thr} threads, T={args.big}: {gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
