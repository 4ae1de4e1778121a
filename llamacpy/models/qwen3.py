"""qwen3: the qwen2 block without q/k/v biases, with per-head RMS norms of q and k before RoPE (loaded by the llama
block when present); the output matrix is the embedding when the file has none."""

from __future__ import annotations

from . import qwen2


class Model(qwen2.Model):
    pass
