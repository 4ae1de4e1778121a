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


RERANK_DOCS = ["Paris is the capital and largest city of France.", "def fibonacci(n): return n",
               "Once upon a time there was a village.", "The weather"]


def record(server: Path, model: Path, pooling: int = -1) -> dict:
    """`pooling` >= 0: an encoder, recorded through /v1/embeddings (pooling 4, a reranker: /v1/rerank)."""
    port = _free_port()
    cmd = [str(server), "-m", str(model), "-c", "512", "-np", "1", "-t", "2", "--port", str(port)]
    if pooling >= 0:
        cmd.insert(-2, "--reranking" if pooling == 4 else "--embeddings")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        if pooling >= 0:
            return _record_encoder(port, model, cmd, pooling)
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


def _record_encoder(port: int, model: Path, cmd: list[str], pooling: int) -> dict:
    ids = [_post(port, "/tokenize", {"content": p, "add_special": True, "parse_special": True})["tokens"]
           for p in PROMPTS]
    out = {"llama.cpp": COMMIT, "isa": "avx512" if HAS_AVX512 else "avx2",
           "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
           "made_by": f"scripts/make_tiny_models.py {model.stem}", "prompts": PROMPTS, "prompt_ids": ids}
    command = " ".join(["llama-server", *cmd[1:2], model.name, *cmd[3:-2]])
    if pooling == 4:
        body = {"query": PROMPTS[0], "documents": RERANK_DOCS}
        out["rerank"] = {"request": body, "response": _post(port, "/v1/rerank", body)["results"]}
        out["command"] = command + "; /v1/rerank"
    else:
        data = _post(port, "/v1/embeddings", {"input": PROMPTS})["data"]
        out["embeddings"] = [[round(x, 6) for x in d["embedding"]] for d in data]
        out["command"] = command + "; /v1/embeddings (L2-normalized)"
    return out


def main(names: list[str]) -> int:
    server = Path(os.environ["LLAMA_SERVER"])
    OUT.mkdir(parents=True, exist_ok=True)
    src = make_tiny_models.vocab_source()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(make_tiny_models.SPECS):
            model = make_tiny_models.make(name, Path(tmp), src)
            data = record(server, model, make_tiny_models.SPECS[name].pooling)
            (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
            print(name, [c["content"] for c in data["cases"]] if "cases" in data else data.get("rerank"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
