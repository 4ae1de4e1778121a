"""Qwen2 and Qwen3 (Qwen2ForCausalLM, Qwen3ForCausalLM) -> GGUF archs `qwen2`, `qwen3` (convert_hf_to_gguf's
Qwen2Model, Qwen3Model): HF's layout as it is (q/k/v biases for qwen2, q/k norms for qwen3)."""

from __future__ import annotations

from . import vocab
from .text_model import TextModel


class Qwen2(TextModel):
    arch = "QWEN2"

    def set_vocab(self, gw) -> int:
        if (self.folder / "tokenizer.model").is_file():
            return vocab.sentencepiece(gw, self.folder, self.hparams.get("vocab_size"))
        return vocab.gpt2(gw, self.folder, self.hparams.get("vocab_size"))


class Qwen3(Qwen2):
    arch = "QWEN3"
