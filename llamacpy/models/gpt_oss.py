"""gpt-oss (OpenAI's gpt-oss-20b/120b, llama.cpp's openai-moe): the llama block with q/k/v and output biases,
NEOX RoPE with YaRN, attention sinks (one learned logit per head in every softmax), a sliding window on every
other layer (the even ones: load_swa_pattern(2)), the FFN pre-norm stored as post_attention_norm, and routed
experts with biases: SOFTMAX_WEIGHT gating (the top-k by logit, their weights the softmax of those logits) and
the clamped swiglu_oai activation (alpha 1.702, limit 7)."""

from __future__ import annotations

from ..gguf import GGUFFile
from . import llama
from .base import ModelArgs, ModelError

SWA_PATTERN = 2  # llama.cpp's load_swa_pattern(ml, 2): layer i slides when i % 2 < 1


class Model(llama.Model):
    rope_neox = True
    ffn_norm_name = "post_attention_norm"
    moe_norm_w = False
    moe_oai = True

    def __init__(self, g: GGUFFile):
        n_layer = int(g.arch_get("block_count"))
        window = int(g.arch_get("attention.sliding_window", 0))
        args = ModelArgs.from_gguf(g, rope_neox=True, swa_window=window,
                                   swa_layers=tuple(i % SWA_PATTERN < SWA_PATTERN - 1 for i in range(n_layer)))
        base_swa = g.arch_get("rope.freq_base_swa")
        if base_swa is not None and float(base_swa) != args.rope_base:
            raise ModelError(f"{g.path}: gpt-oss with its own sliding-window RoPE base is not supported")
        super().__init__(g, args)
