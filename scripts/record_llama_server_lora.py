#!/usr/bin/env python3
"""Record llama-server with a LoRA adapter: greedy tokens and top-5 logprobs at the adapter's scales, set by
--lora, per request ("lora": [{"id", "scale"}]) and by POST /lora-adapters, and GET /lora-adapters; into
tests/data/llama_server_lora[_avx2]/<model>.json.

    LLAMA_SERVER=/path/to/build-noamx/bin/llama-server python3 scripts/record_llama_server_lora.py [MODEL.gguf]

Run against llama.cpp 0c1e570 (the llama.cpp vendored in the llama-cpp-python==0.3.36 sdist, built by
shared/tools/build-llamacpp.sh); default model: the catalog's smollm2 from the cache. The adapter is
scripts/make_lora_adapter.py's (seed 0, rank 8, alpha 16), rebuilt by the tests and checked by its sha256.
CI does not build llama.cpp: tests/e2e/test_lora.py replays the requests on llamacpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
import make_lora_adapter
from llama_server_proc import running

from llamacpy.kernels.simd import HAS_AVX512

OUT = ROOT / "tests/data" / ("llama_server_lora" if HAS_AVX512 else "llama_server_lora_avx2")
COMMIT = "0c1e570"
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_ARGS = ["-c", "1024", "-np", "1", "-t", "2", "--no-webui"]
PROMPTS = ["The capital of France is", "Once upon a time, in a small village,"]
N_PREDICT, N_PROBS = 16, 5


def greedy(url: str, extra: dict) -> list[dict]:
    cases = []
    for prompt in PROMPTS:
        body = {"prompt": prompt, "n_predict": N_PREDICT, "n_probs": N_PROBS, "temperature": 0,
                "cache_prompt": False, "return_tokens": True, **extra}
        r = httpx.post(f"{url}/completion", json=body, timeout=300).json()
        probs = r["completion_probabilities"]
        if len(r["tokens"]) != len(probs):
            raise SystemExit(f"{prompt!r} generated a partial UTF-8 token")
        cases.append({"request": body, "tokens": [p["id"] for p in probs],
                      "top": [[[t["id"], round(t["logprob"], 5)] for t in p["top_logprobs"]] for p in probs],
                      "content": r["content"]})
        print(f"  {extra}: {r['content'][:50]!r}")
    return cases


def serve(server: str, model: Path, flags: list[str], work) -> dict:
    with running(server, model, [*SERVER_ARGS, *flags]) as url:
        return work(url)


def main() -> int:
    server = os.environ.get("LLAMA_SERVER")
    if not server:
        print("set LLAMA_SERVER to llama-server's path", file=sys.stderr)
        return 2
    model = Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE / MODEL
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_lora_adapter.make(model, Path(tmp) / "lora.gguf")

        def with_lora(url: str) -> dict:
            out = {"adapters": httpx.get(f"{url}/lora-adapters", timeout=30).json(),
                   "scale 1 (--lora)": greedy(url, {}),
                   "scale 0.5 (request)": greedy(url, {"lora": [{"id": 0, "scale": 0.5}]}),
                   "scale 0 (request)": greedy(url, {"lora": [{"id": 0, "scale": 0.0}]})}
            posted = httpx.post(f"{url}/lora-adapters", json=[{"id": 0, "scale": 0.25}], timeout=30).json()
            out["post"] = {"response": posted, "adapters": httpx.get(f"{url}/lora-adapters", timeout=30).json()}
            out["scale 0.25 (POST /lora-adapters)"] = greedy(url, {})
            return out

        data = {"llama_cpp_commit": COMMIT, "recorder": "scripts/record_llama_server_lora.py",
                "command": f"llama-server -m {model.name} {' '.join(SERVER_ARGS)} --lora lora.gguf; /completion "
                           f"temperature 0, n_predict {N_PREDICT}, n_probs {N_PROBS}, cache_prompt false",
                "model": model.name, "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                "adapter": "scripts/make_lora_adapter.py MODEL lora.gguf (rank 8, alpha 16, seed 0)",
                "adapter_sha256": hashlib.sha256(adapter.read_bytes()).hexdigest(),
                "isa": "avx512" if HAS_AVX512 else "avx2",
                "base": serve(server, model, [], lambda url: greedy(url, {})),
                "lora": serve(server, model, ["--lora", str(adapter)], with_lora),
                "init_without_apply": serve(server, model, ["--lora", str(adapter), "--lora-init-without-apply"],
                                            lambda url: {"adapters": httpx.get(f"{url}/lora-adapters").json(),
                                                         "default": greedy(url, {})})}
    (OUT / f"{Path(MODEL).stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
