"""mistral3 (Ministral 3, Mistral Small 3.x/Devstral as converted from their Mistral-format checkpoints): the llama
block, with the YaRN betas and log multiplier read from the file, and llama 4's temperature on q (times
1 + temperature_scale * log(1 + floor(pos / original context)), from that context on) where the file sets it."""

from __future__ import annotations

import dataclasses

from ..gguf import GGUFFile
from . import llama
from .base import ModelArgs


class Model(llama.Model):
    def __init__(self, g: GGUFFile):
        a = g.arch_get
        args = ModelArgs.from_gguf(g)
        if args.yarn is not None:
            args.yarn = dataclasses.replace(args.yarn, beta_fast=float(a("rope.scaling.yarn_beta_fast", 32.0)),
                                            beta_slow=float(a("rope.scaling.yarn_beta_slow", 1.0)))
        super().__init__(g, args)
        temp = float(a("attention.temperature_scale", 0.0))
        if temp != 0:
            n_orig = int(a("rope.scaling.original_context_length", args.n_ctx_train) or args.n_ctx_train)
            self.attn_temp = (temp, n_orig)
