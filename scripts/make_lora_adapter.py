#!/usr/bin/env python3
"""Write a random-weight LoRA adapter in GGUF for a model, as convert_lora_to_gguf.py lays one out: general.type
"adapter", adapter.type "lora", adapter.lora.alpha, and `<weight>.lora_a` (rank x n_in) / `<weight>.lora_b`
(n_out x rank) in F16 for the attention and FFN projections of every layer. Deterministic (seeded), so the tests
rebuild the file llama-server was recorded on.

    python3 scripts/make_lora_adapter.py MODEL.gguf OUT.gguf [--rank 8] [--alpha 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from llamacpy.convert.common import write_collected
from llamacpy.gguf import GGUFFile

TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def make(model: Path, out: Path, rank: int = 8, alpha: float = 16.0, seed: int = 0) -> Path:
    g = GGUFFile(model)
    rng = np.random.default_rng(seed)
    w = GGUFWriter(None, g.architecture)  # collects; llamacpy's writer writes
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    w.add_string("adapter.lora.task_name", "llamacpy-test")
    for i in range(int(g.arch_get("block_count"))):
        for target in TARGETS:
            name = f"blk.{i}.{target}.weight"
            n_out, n_in = g.tensors[name].shape
            a = rng.standard_normal((rank, n_in)) / np.sqrt(n_in)
            b = rng.standard_normal((n_out, rank)) * 0.02
            w.add_tensor(f"{name}.lora_a", a.astype(np.float16))
            w.add_tensor(f"{name}.lora_b", b.astype(np.float16))
    return write_collected(w, out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(make(a.model, a.out, a.rank, a.alpha, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
