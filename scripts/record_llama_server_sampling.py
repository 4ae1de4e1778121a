#!/usr/bin/env python3
"""Record llama-server's seeded sampling: for each sampler configuration below, the tokens it generates
and their post-sampling probabilities, into tests/data/llama_server_sampling/<model>.json.

    LLAMA_SERVER=/path/to/build-noamx/bin/llama-server python3 scripts/record_llama_server_sampling.py [MODEL.gguf ...]

Run against llama.cpp 0c1e570 (the llama.cpp vendored in the llama-cpp-python==0.3.36 sdist, built by
shared/tools/build-llamacpp.sh); default models: the catalog's smollm2 and qwen2.5 0.5B from the cache.
CI does not build llama.cpp: tests/e2e/test_sampling_parity.py replays the same requests on `llamacpy
server` and compares the tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import httpx
from llama_server_proc import running

from llamacpy.kernels.simd import HAS_AVX512

ROOT = Path(__file__).resolve().parent.parent
# ggml's float order follows the host's SIMD width (docs/numerics.md), and seeded draws follow the probabilities:
# an AVX2 host's recordings go beside the AVX-512 ones
OUT = ROOT / "tests/data" / ("llama_server_sampling" if HAS_AVX512 else "llama_server_sampling_avx2")
COMMIT = "0c1e570"
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct.gguf"]
SERVER_ARGS = ["-c", "2048", "-np", "1", "-t", "2", "--no-webui"]

STORY = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
REPEAT = ("The cat sat on the mat. The dog sat on the log. The cat sat on the mat. The dog sat on the log. "
          "The cat sat on the")
N = 32
REQUESTS = {  # name -> the sampling fields of a /completion request (prompt, n_predict, n_probs added)
    "default": {"seed": 42},
    "hot_full_vocab_top_p": {"seed": 7, "temperature": 1.3, "top_k": 0, "top_p": 0.9, "min_p": 0.0},
    "min_p_unsorted": {"seed": 11, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.05},
    "typical": {"seed": 5, "temperature": 1.0, "typical_p": 0.6},
    "xtc": {"seed": 3, "temperature": 1.0, "xtc_probability": 0.6, "xtc_threshold": 0.08},
    "top_n_sigma": {"seed": 9, "temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "top_n_sigma": 1.5},
    "dynatemp": {"seed": 13, "temperature": 1.0, "dynatemp_range": 0.6, "dynatemp_exponent": 1.5},
    "mirostat1": {"seed": 17, "mirostat": 1, "mirostat_tau": 4.0, "mirostat_eta": 0.2},
    "mirostat2": {"seed": 19, "temperature": 1.0, "mirostat": 2, "mirostat_tau": 3.0, "mirostat_eta": 0.1},
    "penalties": {"seed": 23, "temperature": 0.9, "repeat_penalty": 1.3, "presence_penalty": 0.4,
                  "frequency_penalty": 0.3, "repeat_last_n": 32, "prompt": REPEAT},
    "dry": {"seed": 29, "temperature": 0.7, "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2,
            "prompt": REPEAT},
    "dry_breakers": {"seed": 29, "temperature": 0.7, "dry_multiplier": 1.5, "dry_allowed_length": 1,
                     "dry_sequence_breakers": ["."], "prompt": REPEAT},
    "greedy_dry": {"temperature": 0.0, "dry_multiplier": 2.0, "dry_allowed_length": 2, "prompt": REPEAT},
    "samplers_list": {"seed": 31, "temperature": 1.1, "samplers": ["min_p", "top-k", "temp"], "top_k": 20},
    "samplers_chars": {"seed": 37, "temperature": 1.1, "samplers": "kypmt", "typical_p": 0.8},
    "min_keep": {"seed": 41, "temperature": 1.0, "top_p": 0.3, "min_keep": 4},
    "grammar_rejection": {"seed": 43, "temperature": 1.2, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
                          "grammar": 'root ::= " " ("was" | "had" | "lived") " " [a-z]+ (" " [a-z]+)* "."'},
}


def request_body(fields: dict) -> dict:
    return {"prompt": STORY, "n_predict": N, "n_probs": 5, "post_sampling_probs": True, "return_tokens": True,
            "cache_prompt": False, **fields}


def record(server: str, model: Path) -> dict:
    out = {}
    with running(server, model, SERVER_ARGS) as url:
        for name, fields in REQUESTS.items():
            body = request_body(fields)
            r = httpx.post(f"{url}/completion", json=body, timeout=300).json()
            out[name] = {"request": body, "tokens": r["tokens"], "content": r["content"],
                         "probs": [{"id": p["id"], "prob": p["prob"],
                                    "top": [[t["id"], t["prob"]] for t in p["top_probs"]]}
                                   for p in r["completion_probabilities"]]}
            print(f"  {name}: {r['content'][:60]!r}")
    return out


def main() -> int:
    server = os.environ.get("LLAMA_SERVER")
    if not server:
        print("set LLAMA_SERVER to llama-server's path", file=sys.stderr)
        return 2
    models = [Path(m) for m in sys.argv[1:]] or [CACHE / m for m in MODELS]
    OUT.mkdir(parents=True, exist_ok=True)
    for model in models:
        print(model.name)
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        data = {"llama_cpp_commit": COMMIT, "recorder": "scripts/record_llama_server_sampling.py",
                "command": f"llama-server -m {model.name} {' '.join(SERVER_ARGS)}", "model": model.name,
                "model_sha256": sha, "isa": "avx512" if HAS_AVX512 else "avx2", "requests": record(server, model)}
        (OUT / f"{model.stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
