"""qwen2moe (Qwen1.5-MoE, Qwen2-57B-A14B): the qwen2 block with routed experts whose weights are not
renormalized, plus a shared expert every token runs, gated by the sigmoid of its own router row."""

from __future__ import annotations

from . import qwen2


class Model(qwen2.Model):
    moe_norm_w = False
