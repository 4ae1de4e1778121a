"""seed_oss (Seed-OSS-36B): the qwen2 block (q/k/v biases, NEOX RoPE) whose FFN pre-norm is stored as
post_attention_norm."""

from __future__ import annotations

from . import qwen2


class Model(qwen2.Model):
    ffn_norm_name = "post_attention_norm"
