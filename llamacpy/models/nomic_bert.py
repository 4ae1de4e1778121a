"""nomic-bert (nomic-embed-text v1/v1.5): the bert encoder with NEOX RoPE on q and k instead of position
embeddings (q, k, v usually in one attn_qkv matrix) and a SwiGLU FFN without biases."""

from __future__ import annotations

from . import bert


class Model(bert.Model):
    positions = "rope"
    ffn = "swiglu"
