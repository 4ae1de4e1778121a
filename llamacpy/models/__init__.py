"""Architectures, chosen by `general.architecture`: the module of that name defines `Model`."""

from __future__ import annotations

import importlib

from ..gguf import GGUFFile
from .base import DecoderModel, KVCache, ModelArgs, ModelError, Segment

ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3", "bert": "bert",
                 "granite": "granite", "smollm3": "smollm3", "olmo2": "olmo2", "phi3": "phi3", "gemma2": "gemma2",
                 "qwen3moe": "qwen3moe", "qwen2moe": "qwen2moe", "olmoe": "olmoe", "granitemoe": "granitemoe",
                 "exaone": "exaone", "internlm2": "internlm2", "ernie4_5": "ernie4_5", "seed_oss": "seed_oss",
                 "arcee": "arcee", "mistral3": "mistral3", "nomic-bert": "nomic_bert", "jina-bert-v2": "jina_bert_v2",
                 "gpt-oss": "gpt_oss"}


def load_model(g: GGUFFile) -> DecoderModel:
    """The architecture's `Model` (for encoders such as bert, not a DecoderModel: it has `is_encoder`)."""
    arch = g.architecture
    if arch not in ARCHITECTURES:
        raise ModelError(f"{g.path}: architecture {arch!r} is not supported "
                         f"(supported: {', '.join(ARCHITECTURES)})")
    module = importlib.import_module(f".{ARCHITECTURES[arch]}", __name__)
    return module.Model(g)


__all__ = ["ARCHITECTURES", "DecoderModel", "KVCache", "ModelArgs", "ModelError", "Segment", "load_model"]
