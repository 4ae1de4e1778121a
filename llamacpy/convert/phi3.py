"""Phi-3 (Phi3ForCausalLM) -> GGUF arch `phi3` (convert_hf_to_gguf's Phi3MiniModel): fused qkv and gate_up
matrices kept fused, the rotary share of the head as rope.dimension_count, LongRoPE factors as tensors."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from . import vocab
from .common import ConvertError, read_json
from .text_model import TextModel


class Phi3(TextModel):
    arch = "PHI3"

    def set_vocab(self, gw) -> None:
        config = self.folder / "tokenizer_config.json"
        if config.is_file() and read_json(config).get("tokenizer_class") == "GPT2Tokenizer":  # phi-4
            vocab.gpt2(gw, self.folder, self.hparams.get("vocab_size"))
        else:
            vocab.sentencepiece(gw, self.folder, self.hparams.get("vocab_size"), phi3=True)

    def rope_dims(self) -> int:
        n_embd, n_head = int(self.find("hidden_size", "n_embd")), int(self.find("num_attention_heads", "n_head"))
        return int(self.rope.get("partial_rotary_factor", 1.0) * n_embd) // n_head

    def set_parameters(self, gw) -> None:
        if "original_max_position_embeddings" not in self.rope:
            raise ConvertError(f"{self.folder / 'config.json'}: original_max_position_embeddings is missing")
        gw.add_context_length(int(self.find("n_positions", "max_position_embeddings")))
        gw.add_rope_scaling_orig_ctx_len(int(self.rope["original_max_position_embeddings"]))
        gw.add_embedding_length(int(self.find("hidden_size", "n_embd")))
        gw.add_feed_forward_length(int(self.find("intermediate_size")))
        gw.add_block_count(self.n_layer)
        gw.add_head_count(int(self.find("num_attention_heads", "n_head")))
        gw.add_head_count_kv(int(self.find("num_key_value_heads", "n_head_kv")))
        gw.add_layer_norm_rms_eps(float(self.find("rms_norm_eps")))
        gw.add_rope_dimension_count(self.rope_dims())
        gw.add_rope_freq_base(float(self.rope.get("full_attention", self.rope)["rope_theta"]))
        gw.add_file_type(self.ftype)
        gw.add_sliding_window(int(self.hparams.get("sliding_window") or 0))

    def extra_tensors(self) -> Iterable[tuple[str, np.ndarray]]:
        if self.rope.get("long_factor"):
            yield "rope_factors_long.weight", np.asarray(self.rope["long_factor"], dtype=np.float32)
            yield "rope_factors_short.weight", np.asarray(self.rope["short_factor"], dtype=np.float32)

    def extra_parameters(self, gw) -> None:
        """The attention factor of LongRoPE / YaRN factors (written by generate_extra_tensors upstream)."""
        long, short = self.rope.get("long_factor"), self.rope.get("short_factor")
        if not long:
            return
        n_ctx = int(self.find("n_positions", "max_position_embeddings"))
        orig = int(self.rope["original_max_position_embeddings"])
        scale = n_ctx / orig
        kind = (self.rope.get("rope_type") or "").lower()
        if kind in ("su", "longrope"):
            gw.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0)
        elif kind == "yarn":
            gw.add_rope_scaling_attn_factors(0.1 * math.log(scale) + 1.0 if scale > 1.0 else 1.0)
        else:
            raise ConvertError(f"{self.folder / 'config.json'}: rope scaling {kind!r} is not supported")
        if not short or len(long) != len(short) or len(long) != self.rope_dims() // 2:
            raise ConvertError(f"{self.folder / 'config.json'}: long_factor and short_factor need "
                               f"{self.rope_dims() // 2} values each")
