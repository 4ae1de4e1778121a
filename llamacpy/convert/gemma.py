"""Gemma 2 and Gemma 3 (Gemma2ForCausalLM, Gemma3ForCausalLM) -> GGUF archs `gemma2`, `gemma3`
(convert_hf_to_gguf's Gemma2Model, Gemma3Model): the RMSNorm weights shifted by one (HF scales by 1 + w), the
soft-caps and sliding window from the config, the embedding cut to the real vocabulary (gemma 3)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import numpy as np

from . import vocab
from .common import read_json
from .text_model import TextModel

GEMMA3_SWA_PATTERN = 6  # what llama.cpp assumes when the file does not say


class Gemma2(TextModel):
    arch = "GEMMA2"

    def set_vocab(self, gw) -> None:
        """tokenizer.model; beyond llama.cpp's converter (which requires it for gemma 2), a folder with only
        a BPE tokenizer.json is converted as gemma 3's is."""
        if not (self.folder / "tokenizer.model").is_file() and (self.folder / "tokenizer.json").is_file():
            vocab.gpt2(gw, self.folder, self.hparams.get("vocab_size"))
            return
        vocab.sentencepiece(gw, self.folder, self.hparams.get("vocab_size"))
        gw.add_add_space_prefix(False)

    def set_parameters(self, gw) -> None:
        h = self.hparams
        gw.add_context_length(int(h["max_position_embeddings"]))
        gw.add_embedding_length(int(h["hidden_size"]))
        gw.add_block_count(self.n_layer)
        gw.add_feed_forward_length(int(h["intermediate_size"]))
        gw.add_head_count(int(h["num_attention_heads"]))
        gw.add_head_count_kv(int(h.get("num_key_value_heads") or h["num_attention_heads"]))
        gw.add_layer_norm_rms_eps(float(h["rms_norm_eps"]))
        gw.add_key_length(int(h["head_dim"]))
        gw.add_value_length(int(h["head_dim"]))
        gw.add_file_type(self.ftype)
        gw.add_attn_logit_softcapping(float(h["attn_logit_softcapping"]))
        gw.add_final_logit_softcapping(float(h["final_logit_softcapping"]))
        gw.add_sliding_window(int(h["sliding_window"]))

    def skip(self, name: str) -> bool:
        return name == "lm_head.weight" or super().skip(name)  # tied: llama.cpp reads token_embd

    def modify(self, name: str, data: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
        if name.endswith("norm.weight"):
            data = data + np.float32(1.0)
        yield self.gguf_name(name), data


class Gemma3(Gemma2):
    arch = "GEMMA3"

    def set_parameters(self, gw) -> None:
        TextModel.set_parameters(self, gw)
        h = self.hparams
        gw.add_context_length(int(h.get("max_position_embeddings", 131072)))
        gw.add_head_count(int(h.get("num_attention_heads", 8)))
        gw.add_layer_norm_rms_eps(float(h.get("rms_norm_eps", 1e-6)))
        gw.add_key_length(int(h.get("head_dim", 256)))
        gw.add_value_length(int(h.get("head_dim", 256)))
        gw.add_rope_freq_base(float(self.rope.get("full_attention", self.rope).get("rope_theta", 1_000_000.0)))
        if h.get("final_logit_softcapping"):
            gw.add_final_logit_softcapping(float(h["final_logit_softcapping"]))
        if h.get("sliding_window_pattern") != 1:
            gw.add_sliding_window(int(h["sliding_window"]))
        gw.add_head_count_kv(int(h.get("num_key_value_heads", 4)))
        # beyond llama.cpp's converter, which leaves the layer pattern to llama.cpp's default of 6: a checkpoint
        # with another pattern is written with it (llama.cpp reads the key)
        pattern = h.get("sliding_window_pattern")
        if pattern is None and h.get("layer_types"):
            swa = [t == "sliding_attention" for t in h["layer_types"]]
            default = [(i + 1) % GEMMA3_SWA_PATTERN != 0 for i in range(len(swa))]
            if swa != default:
                gw.add_sliding_window_pattern(swa)
        elif pattern not in (None, 1, GEMMA3_SWA_PATTERN):
            gw.add_uint32(f"{gw.arch}.attention.sliding_window_pattern", int(pattern))

    @cached_property
    def n_vocab_real(self) -> int:
        """The vocabulary's size, as Gemma3Model.modify_tensors counts it: the SentencePiece vocabulary's (the
        config's vocab_size, or the tokenizer.model's where the config has none), else tokenizer.json's tokens."""
        if (self.folder / "tokenizer.model").is_file():
            if self.hparams.get("vocab_size"):
                return int(self.hparams["vocab_size"])
            from sentencepiece import SentencePieceProcessor

            return SentencePieceProcessor(model_file=str(self.folder / "tokenizer.model")).vocab_size()
        t = read_json(self.folder / "tokenizer.json")
        return len(t["model"]["vocab"]) + len(t["added_tokens"])

    def modify(self, name: str, data: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
        if "embed_tokens.weight" in name:  # out-of-vocabulary rows dropped
            data = data[:self.n_vocab_real]
        yield from super().modify(name, data)
