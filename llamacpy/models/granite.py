"""granite: the llama block with IBM's four multipliers: the embeddings times embedding_scale, attention scores
times attention.scale (instead of 1/sqrt(head_dim)), each block's attention and FFN outputs times residual_scale
before they are added, the logits divided by logit_scale."""

from __future__ import annotations

import numpy as np

from ..gguf import GGUFFile
from . import llama


class Model(llama.Model):
    def __init__(self, g: GGUFFile):
        super().__init__(g)
        a = g.arch_get
        self.embed_scale = float(a("embedding_scale", 1.0))
        self.scale = float(a("attention.scale", 0.0)) or self.scale
        self.residual_scale = float(a("residual_scale", 1.0))
        self.logit_scale = float(np.float32(1.0) / np.float32(a("logit_scale", 1.0)))  # ggml_scale(1.0f / s)
