"""qwen2: the llama block with q/k/v biases (loaded when present), NEOX RoPE and a separate output matrix."""

from __future__ import annotations

from . import llama


class Model(llama.Model):
    rope_neox = True
