"""olmoe (OLMoE-1B-7B): the llama block with NEOX RoPE, RMS norms of q and k over all heads at once, and
routed experts whose weights are not renormalized."""

from __future__ import annotations

from . import llama


class Model(llama.Model):
    rope_neox = True
    moe_norm_w = False
