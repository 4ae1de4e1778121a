#!/usr/bin/env python3
"""Record llama-server's greedy tokens and top-5 logprobs with quantized KV caches (`-ctk/-ctv`), into
tests/data/llama_server_cache_types[_avx2]/<model>.json.

    LLAMA_SERVER=/path/to/build-noamx/bin/llama-server python3 scripts/record_llama_server_cache_types.py [MODEL.gguf ...]

Run against llama.cpp 0c1e570 (the llama.cpp vendored in the llama-cpp-python==0.3.36 sdist, built by
shared/tools/build-llamacpp.sh); default model: the catalog's smollm2 from the cache. For each pair of cache
types below: `llama-server -m MODEL -c 2048 -np 1 -t 2 -ctk K -ctv V`, then a short and a long prompt (over 64
tokens: ggml's prompt path) through `/completion` with temperature 0, n_predict 24, n_probs 5. CI does not build
llama.cpp: tests/e2e/test_cache_types.py replays the prompts on llamacpy's engine with the same cache types.
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
OUT = ROOT / "tests/data" / ("llama_server_cache_types" if HAS_AVX512 else "llama_server_cache_types_avx2")
COMMIT = "0c1e570"
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf"]
SERVER_ARGS = ["-c", "2048", "-np", "1", "-t", "2", "--no-webui"]
TYPES = [("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q4_1", "q5_0"), ("q5_1", "iq4_nl"), ("iq4_nl", "q5_1"),
         ("f16", "q8_0"), ("q8_0", "f16"), ("q5_1", "f16"), ("f16", "iq4_nl")]
PROMPTS = [
    "The capital of France is",
    ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a goldsmith from "
    "Mainz, combined movable metal type, oil-based inks and a wooden press adapted from those used for wine. His "
    "Bible, finished around 1455, showed that books could be made faster and cheaper than ever before. Within fifty "
    "years, printing shops had spread to more than two hundred cities across Europe, and"),
]
N_PREDICT, N_PROBS = 24, 5


def record(server: str, model: Path, ctk: str, ctv: str) -> list[dict]:
    with running(server, model, [*SERVER_ARGS, "-ctk", ctk, "-ctv", ctv]) as url:
        cases = []
        for prompt in PROMPTS:
            ids = httpx.post(f"{url}/tokenize", json={"content": prompt, "add_special": True,
                                                       "parse_special": True}, timeout=60).json()["tokens"]
            r = httpx.post(f"{url}/completion", json={
                "prompt": prompt, "n_predict": N_PREDICT, "n_probs": N_PROBS, "temperature": 0,
                "cache_prompt": False, "return_tokens": True}, timeout=300).json()
            probs = r["completion_probabilities"]
            if len(r["tokens"]) != len(probs):
                raise SystemExit(f"{ctk}/{ctv}: {prompt[:20]!r} generated a partial UTF-8 token")
            cases.append({"prompt": prompt, "prompt_ids": ids, "tokens": [p["id"] for p in probs],
                          "top": [[[t["id"], round(t["logprob"], 5)] for t in p["top_logprobs"]] for p in probs],
                          "content": r["content"]})
            print(f"  {ctk}/{ctv} ({len(ids)} prompt tokens): {r['content'][:50]!r}")
        return cases


def main() -> int:
    server = os.environ.get("LLAMA_SERVER")
    if not server:
        print("set LLAMA_SERVER to llama-server's path", file=sys.stderr)
        return 2
    models = [Path(m) for m in sys.argv[1:]] or [CACHE / m for m in MODELS]
    OUT.mkdir(parents=True, exist_ok=True)
    for model in models:
        print(model.name)
        data = {"llama_cpp_commit": COMMIT, "recorder": "scripts/record_llama_server_cache_types.py",
                "command": f"llama-server -m {model.name} {' '.join(SERVER_ARGS)} -ctk K -ctv V; /completion "
                           f"temperature 0, n_predict {N_PREDICT}, n_probs {N_PROBS}, cache_prompt false",
                "model": model.name, "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                "isa": "avx512" if HAS_AVX512 else "avx2",
                "types": {f"{k}/{v}": record(server, model, k, v) for k, v in TYPES}}
        (OUT / f"{model.stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
