"""Llama, Mistral and Mixtral (LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM) -> GGUF arch `llama`
(convert_hf_to_gguf's LlamaModel): q and k rows permuted back from HF's rotate-half order to GGUF's interleaved
pairs, llama 3's RoPE factors as rope_freqs, Mixtral's experts stacked, a SentencePiece tokenizer.model if there
is one, else the BPE tokenizer.json."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import vocab
from .common import ConvertError, read_json
from .text_model import TextModel, llama3_rope_factors


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's [n_head, 2, head_dim/2] row order -> GGUF's [n_head, head_dim/2, 2] (LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class Llama(TextModel):
    arch = "LLAMA"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        # transformers' LlamaConfig / MistralConfig fill head_dim in (MixtralConfig does not), and llama.cpp's
        # converter reads the config through them: key_length and value_length are written even where
        # config.json has no head_dim
        h = self.hparams
        if "MixtralForCausalLM" not in (h.get("architectures") or []):
            h.setdefault("head_dim", h["hidden_size"] // h["num_attention_heads"])

    def set_parameters(self, gw) -> None:
        super().set_parameters(gw)
        gw.add_vocab_size(int(self.hparams["vocab_size"]))
        gw.add_rope_dimension_count(self.head_dim())

    def head_dim(self) -> int:
        return int(self.hparams.get("head_dim") or self.hparams["hidden_size"] // self.hparams["num_attention_heads"])

    def set_vocab(self, gw) -> None:
        config = self.folder / "tokenizer_config.json"
        if config.is_file() and (prefix := read_json(config).get("add_prefix_space")) is not None:
            gw.add_add_space_prefix(bool(prefix))
        if (self.folder / "tokenizer.model").is_file():
            vocab.sentencepiece(gw, self.folder, self.hparams.get("vocab_size"))
        else:
            if vocab.is_llama_spm_json(self.folder):
                raise ConvertError(f"{self.folder}: a SentencePiece-style tokenizer.json needs its tokenizer.model "
                                   "(llama.cpp reads that one through transformers)")
            vocab.gpt2(gw, self.folder, self.hparams.get("vocab_size"))
        if self.hparams.get("vocab_size", 32000) == 49152:  # granite's small models (and SmolLM): no BOS
            gw.add_add_bos_token(False)

    expert_kinds = ("w1", "w2", "w3")  # Mixtral's block_sparse_moe: gate, down, up

    def modify(self, name: str, data: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
        n_head = int(self.hparams["num_attention_heads"])
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, n_head)
        elif name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, int(self.hparams.get("num_key_value_heads") or n_head))
        yield self.gguf_name(name), data

    def extra_tensors(self) -> Iterable[tuple[str, np.ndarray]]:
        rope = self.rope.get("full_attention", self.rope)
        if (rope.get("rope_type") or "").lower() == "llama3":
            yield "rope_freqs.weight", llama3_rope_factors(rope.get("rope_theta", 10000.0), self.head_dim(), rope)
