"""smollm3: the llama block, every fourth layer without RoPE (its q and k keep no position: "NoPE" layers)."""

from __future__ import annotations

from ..gguf import GGUFFile
from . import llama

NO_ROPE_LAYER_STEP = 4  # llama.cpp's n_no_rope_layer_step for smollm3 (not in the GGUF)


class Model(llama.Model):
    def __init__(self, g: GGUFFile):
        super().__init__(g)
        self.rope_layers = tuple((i + 1) % NO_ROPE_LAYER_STEP != 0 for i in range(self.args.n_layer))
