"""Qwen2, Qwen3 and their mixtures of experts (Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen2MoeForCausalLM,
Qwen3MoeForCausalLM) -> GGUF archs `qwen2`, `qwen3`, `qwen2moe`, `qwen3moe` (convert_hf_to_gguf's Qwen2Model,
Qwen3Model, Qwen2MoeModel, Qwen3MoeModel): HF's layout as it is (q/k/v biases for qwen2, q/k norms for qwen3),
the experts stacked per layer, qwen2moe's shared expert and its gate kept apart."""

from __future__ import annotations

from . import vocab
from .text_model import TextModel


class Qwen2(TextModel):
    arch = "QWEN2"

    def set_vocab(self, gw) -> None:
        if (self.folder / "tokenizer.model").is_file():
            vocab.sentencepiece(gw, self.folder, self.hparams.get("vocab_size"))
        else:
            vocab.gpt2(gw, self.folder, self.hparams.get("vocab_size"))


class Qwen3(Qwen2):
    arch = "QWEN3"


class Qwen2Moe(Qwen2):
    arch = "QWEN2MOE"
    expert_kinds = ("down_proj", "gate_proj", "up_proj")

    def set_parameters(self, gw) -> None:
        super().set_parameters(gw)
        if (n := self.hparams.get("moe_intermediate_size")) is not None:
            gw.add_expert_feed_forward_length(int(n))
        if (n := self.hparams.get("shared_expert_intermediate_size")) is not None:
            gw.add_expert_shared_feed_forward_length(int(n))


class Qwen3Moe(Qwen2Moe):
    arch = "QWEN3MOE"
