"""llamacpy and llama.cpp side by side, same models, same machine, one run: prints the ratios.

    python scripts/bench_vs_llama_cpp.py [-m smollm2-135m-instruct -m qwen2.5-coder-0.5b-instruct] [-t 2] [-r 3]

llama.cpp comes from PyPI as the sdist of llama-cpp-python 0.3.36 (it compiles the vendored llama.cpp,
~10 minutes on 2 cores). The wheel and a virtual environment are cached outside the repository, in
$LLAMACPY_BENCH_CACHE (default ~/.cache/llamacpy-bench). AMX is turned off in that build: its kernels
crash on this machine kind. Both sides run the same tests as llama-bench: pp512 (one batch of 512
random tokens) and tg128 (128 tokens decoded one at a time), with one warm-up each.
Run it on a quiet machine: nothing else should use the cores meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's package, whatever an editable install elsewhere points to
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import statistics
import subprocess
import venv

SDIST = "llama-cpp-python==0.3.36"
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
              "-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON "
              "-DGGML_AVX_VNNI=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF")

# Runs inside the llama-cpp-python environment; prints {"pp": [t/s...], "tg": [t/s...]} as JSON.
LLAMA_CPP_BENCH = r'''
import ctypes, json, sys, time, random
import llama_cpp
path, threads, reps, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
llm = llama_cpp.Llama(path, n_ctx=n_prompt + n_gen + 16, n_batch=n_prompt, n_threads=threads,
                      n_threads_batch=threads, verbose=False, flash_attn=True)
ctx, vocab = llm.ctx, llm.n_vocab()
mem = llama_cpp.llama_get_memory(ctx)
rnd = random.Random(0)
def decode(tokens, pos0):
    arr = (ctypes.c_int32 * len(tokens))(*tokens)
    b = llama_cpp.llama_batch_get_one(arr, len(tokens))
    assert llama_cpp.llama_decode(ctx, b) == 0
def pp():
    llama_cpp.llama_memory_clear(mem, True)
    toks = [rnd.randrange(vocab) for _ in range(n_prompt)]
    t = time.perf_counter(); decode(toks, 0); return n_prompt / (time.perf_counter() - t)
def tg():
    llama_cpp.llama_memory_clear(mem, True)
    tok = rnd.randrange(vocab); t = time.perf_counter()
    for i in range(n_gen): decode([tok], i)
    return n_gen / (time.perf_counter() - t)
out = {}
for name, fn in (("pp", pp), ("tg", tg)):
    fn()
    out[name] = [fn() for _ in range(reps)]
print(json.dumps(out))
'''


def cache_dir() -> Path:
    return Path(os.environ.get("LLAMACPY_BENCH_CACHE", Path.home() / ".cache" / "llamacpy-bench"))


def llama_cpp_python() -> Path:
    """The interpreter of a venv holding llama-cpp-python, built once and cached."""
    root = cache_dir()
    py = root / "venv" / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import llama_cpp"], capture_output=True, check=False).returncode == 0:
        return py
    root.mkdir(parents=True, exist_ok=True)
    wheels = list(root.glob("llama_cpp_python-0.3.36-*.whl"))
    if not wheels:
        print("building llama-cpp-python from its sdist (about 10 minutes)...", file=sys.stderr, flush=True)
        env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary", ":all:", "-w", str(root),
                        SDIST], check=True, env=env)
        wheels = list(root.glob("llama_cpp_python-0.3.36-*.whl"))
    venv.create(root / "venv", with_pip=True, system_site_packages=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheels[0]), "diskcache"], check=True)
    return py


def llama_cpp_speed(py: Path, model: Path, threads: int, reps: int, n_prompt: int, n_gen: int) -> dict:
    r = subprocess.run([py, "-c", LLAMA_CPP_BENCH, str(model), str(threads), str(reps), str(n_prompt), str(n_gen)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def llamacpy_speed(model: Path, threads: int, reps: int, n_prompt: int, n_gen: int) -> dict:
    from llamacpy.cli.bench import run_test
    from llamacpy.gguf import GGUFFile
    from llamacpy.kernels import set_num_threads
    from llamacpy.models import load_model

    set_num_threads(threads)
    m = load_model(GGUFFile(model))
    out = {}
    for name, (p, n) in (("pp", (n_prompt, 0)), ("tg", (0, n_gen))):
        run_test(m, m.args.n_vocab, p, n, n_prompt)
        out[name] = [(p or n) / run_test(m, m.args.n_vocab, p, n, n_prompt) for _ in range(reps)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", action="append", help="catalog name or path (repeatable)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    a = ap.parse_args()
    from llamacpy.catalog import resolve_model

    models = a.model or ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    py = llama_cpp_python()
    print("| model | test | llama.cpp t/s | llamacpy t/s | ratio |\n| --- | --- | ---: | ---: | ---: |")
    for name in models:
        path = resolve_model(name)
        ref = llama_cpp_speed(py, path, a.threads, a.repetitions, a.n_prompt, a.n_gen)
        ours = llamacpy_speed(path, a.threads, a.repetitions, a.n_prompt, a.n_gen)
        for test, label in (("pp", f"pp{a.n_prompt}"), ("tg", f"tg{a.n_gen}")):
            r, o = statistics.fmean(ref[test]), statistics.fmean(ours[test])
            print(f"| {name} | {label} | {r:.2f} ± {statistics.pstdev(ref[test]):.2f} | "
                  f"{o:.2f} ± {statistics.pstdev(ours[test]):.2f} | {o / r:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
