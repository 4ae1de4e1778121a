"""qwen3moe (Qwen3-30B-A3B...): the qwen3 block with routed experts instead of the dense FFN (softmax router,
top-k experts renormalized to sum 1)."""

from __future__ import annotations

from . import qwen3


class Model(qwen3.Model):
    pass
