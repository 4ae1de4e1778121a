"""gemma2: the gemma3 block without q/k norms, with logit soft-capping in attention (attn_logit_softcapping) and on
the output (final_logit_softcapping); sliding-window attention on every other layer (window 4096 unless the file
says otherwise), both kinds of layer with the model's RoPE base."""

from __future__ import annotations

import numpy as np

from ..gguf import GGUFFile
from . import gemma3

DEFAULT_WINDOW = 4096  # llama.cpp's gemma2 default when the GGUF has no sliding_window


class Model(gemma3.Model):
    def __init__(self, g: GGUFFile):
        # llama.cpp's converter does not write gemma2's rope.freq_base: llama.cpp's default of 10000 applies
        base = float(g.arch_get("rope.freq_base", 10000.0))
        args = gemma3.gemma3_args(g, pattern=2, window=DEFAULT_WINDOW, base_swa=base)
        self.swa_freq_scale = args.rope_scale
        super().__init__(g, args)
        self.final_softcap = float(g.arch_get("final_logit_softcapping", 0.0))

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = super().logits(x)
        if self.final_softcap:  # ggml_scale(1/cap), ggml_tanh, ggml_scale(cap)
            cap = np.float32(self.final_softcap)
            out = np.tanh(out * (np.float32(1.0) / cap)) * cap
        return out
