#!/usr/bin/env python3
"""Record llama.cpp's greedy tokens and top-5 logprobs on the tiny models of make_tiny_models.py, into
tests/data/arch/<isa>/<name>.json (what tests/e2e/test_arch_recordings.py compares llamacpy with; <isa> is
avx2 or avx512, the host's, as ggml's float order follows it).

    LLAMA_SERVER=/path/to/build/bin/llama-server python3 scripts/record_llama_cpp_arch.py [NAME ...]

For each model: `llama-server -m <model> -c 512 -np 1 -t 2 --port P`, then for each prompt `/tokenize` (with
add_special and parse_special, as /completion tokenizes) and `/completion` with temperature 0, n_predict 16,
n_probs 5. Each file names the llama.cpp commit, the host's instruction set (AVX2 or AVX-512: ggml's float order
follows it), the model's sha256 and the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_tiny_models

from llamacpy.kernels.simd import HAS_AVX512

# the host's SIMD width sets ggml's float order (docs/numerics.md): a recording names it
COMMIT = "0c1e570"  # the llama.cpp vendored in llama-cpp-python==0.3.36
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a small village,"]
N_PREDICT, N_PROBS = 16, 5
OUT = ROOT / "tests/data/arch" / ("avx512" if HAS_AVX512 else "avx2")


def _post(port: int, route: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{route}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(server: Path, model: Path) -> dict:
    port = _free_port()
    cmd = [str(server), "-m", str(model), "-c", "512", "-np", "1", "-t", "2", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        cases = []
        for prompt in PROMPTS:
            ids = _post(port, "/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"]
            res = _post(port, "/completion", {"prompt": prompt, "n_predict": N_PREDICT, "n_probs": N_PROBS,
                                              "temperature": 0, "cache_prompt": False, "return_tokens": True})
            if len(res["tokens"]) != len(res["completion_probabilities"]):
                # llama-server leaves a token that ends inside a UTF-8 character out of the probabilities:
                # the recording would misalign, so pick another seed for this model
                raise SystemExit(f"{model.stem}: {prompt!r} generated a partial UTF-8 token ({res['tokens']})")
            cases.append({"prompt": prompt, "prompt_ids": ids, "tokens": [p["id"] for p in
                                                                           res["completion_probabilities"]],
                          "top": [[[t["id"], round(t["logprob"], 5)] for t in p["top_logprobs"]]
                                  for p in res["completion_probabilities"]],
                          "content": res["content"]})
        return {"llama.cpp": COMMIT, "isa": "avx512" if HAS_AVX512 else "avx2", "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                "made_by": f"scripts/make_tiny_models.py {model.stem}",
                "command": " ".join(["llama-server", *cmd[1:2], model.name, *cmd[3:-2]])
                + f"; /completion temperature 0, n_predict {N_PREDICT}, n_probs {N_PROBS}", "cases": cases}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(names: list[str]) -> int:
    server = Path(os.environ["LLAMA_SERVER"])
    OUT.mkdir(parents=True, exist_ok=True)
    src = make_tiny_models.vocab_source()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(make_tiny_models.SPECS):
            model = make_tiny_models.make(name, Path(tmp), src)
            data = record(server, model)
            (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
            print(name, [c["content"] for c in data["cases"]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
