#!/usr/bin/env python3
"""Export a GGUF decoder to a Hugging Face folder, so that `llamacpy convert` can be checked without a hub.

    python3 scripts/export_hf.py MODEL.gguf OUT_DIR [--dtype bf16|f16|f32] [--mistral]

The inverse of convert_hf_to_gguf.py for the families llamacpy converts (llama/mistral/mixtral, qwen2, qwen3,
qwen2moe, qwen3moe, gemma2, gemma3, phi3): the weights dequantized (llamacpy's bit-exact kernels) and written as model.safetensors under
HF names, with HF's layouts restored (llama's q/k rows back in rotate-half order, gemma's norms minus one);
config.json from the GGUF hyper-parameters; the vocabulary as HF ships it: tokenizer.json for byte-level BPE
(the pre-tokenizer rebuilt from its tokenizer.ggml.pre name), tokenizer.model (SentencePiece protobuf) for
SentencePiece vocabularies; tokenizer_config.json with the special tokens and the chat template.

Not every GGUF can be exported: llama 3's rope_freqs and other derived tensors have no HF form; such a file
is refused with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from llamacpy.convert import safetensors
from llamacpy.convert.llama import permute
from llamacpy.gguf.reader import GGUFFile
from llamacpy.kernels.weight import dequantize  # ggml's own dequantization, bit for bit

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# GGUF arch -> (HF architecture, model_type)
FAMILIES = {"llama": ("LlamaForCausalLM", "llama"), "qwen2": ("Qwen2ForCausalLM", "qwen2"),
            "qwen3": ("Qwen3ForCausalLM", "qwen3"), "qwen2moe": ("Qwen2MoeForCausalLM", "qwen2_moe"),
            "qwen3moe": ("Qwen3MoeForCausalLM", "qwen3_moe"), "gemma2": ("Gemma2ForCausalLM", "gemma2"),
            "gemma3": ("Gemma3ForCausalLM", "gemma3_text"), "phi3": ("Phi3ForCausalLM", "phi3")}
MISTRAL = ("MistralForCausalLM", "mistral")
MIXTRAL = ("MixtralForCausalLM", "mixtral")  # a llama file with experts

# per-layer GGUF names -> HF names (gemma's ffn_norm is its pre-FFN norm; elsewhere post_attention_layernorm)
LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_qkv": "self_attn.qkv_proj",
         "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
         "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj"}
# mixtures of experts: the router, the stacked experts (split back into one matrix per expert) and qwen2moe's
# shared expert, for Mixtral's block_sparse_moe and Qwen's mlp
MIXTRAL_MOE = {"ffn_gate_inp": "block_sparse_moe.gate", "ffn_gate_exps": "block_sparse_moe.experts.{x}.w1",
               "ffn_down_exps": "block_sparse_moe.experts.{x}.w2", "ffn_up_exps": "block_sparse_moe.experts.{x}.w3"}
QWEN_MOE = {"ffn_gate_inp": "mlp.gate", "ffn_gate_exps": "mlp.experts.{x}.gate_proj",
            "ffn_down_exps": "mlp.experts.{x}.down_proj", "ffn_up_exps": "mlp.experts.{x}.up_proj",
            "ffn_gate_shexp": "mlp.shared_expert.gate_proj", "ffn_up_shexp": "mlp.shared_expert.up_proj",
            "ffn_down_shexp": "mlp.shared_expert.down_proj", "ffn_gate_inp_shexp": "mlp.shared_expert_gate"}
GEMMA_LAYER = {**LAYER, "ffn_norm": "pre_feedforward_layernorm", "post_attention_norm": "post_attention_layernorm",
               "post_ffw_norm": "post_feedforward_layernorm"}
TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# tokenizer.ggml.pre -> tokenizer.json (normalizer, pre_tokenizer) as the models that carry the name ship it
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTES_ONLY = {**_BYTE_LEVEL, "trim_offsets": False, "use_regex": False}
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
_LLAMA3 = _QWEN2.replace(r"|\p{N}|", r"|\p{N}{1,3}|")


def _split(regex: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


PRE_TOKENIZERS = {
    "gpt-2": (None, _BYTE_LEVEL),
    "smollm": (None, {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                            _BYTE_LEVEL]}),
    "qwen2": ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [_split(_QWEN2), _BYTES_ONLY]}),
    "llama-bpe": (None, {"type": "Sequence", "pretokenizers": [_split(_LLAMA3), _BYTES_ONLY]}),
}


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """GGUF's interleaved rope rows -> HF's rotate-half order (the inverse of convert's permute)."""
    back = w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(permute(back, n_head), w)
    return back


def export_tensors(g: GGUFFile) -> dict[str, np.ndarray]:
    arch = g.architecture
    n_head, n_kv = g.arch_get("attention.head_count"), g.arch_get("attention.head_count_kv")
    gemma = arch.startswith("gemma")
    layer = GEMMA_LAYER if gemma else {**LAYER, **(MIXTRAL_MOE if arch == "llama" else QWEN_MOE)}
    out = {}
    for name, t in g.tensors.items():
        base, _, suffix = name.rpartition(".")
        if base.startswith("blk."):
            _, i, kind = base.split(".", 2)
            if kind not in layer:
                raise SystemExit(f"{g.path}: {name} has no Hugging Face counterpart in this exporter")
            hf = f"model.layers.{i}.{layer[kind]}"
            if arch == "phi3" and kind == "ffn_up":
                hf = f"model.layers.{i}.mlp.gate_up_proj"
        elif base in TOP:
            hf = TOP[base]
        elif base in ("rope_factors_long", "rope_factors_short") and arch == "phi3":
            continue  # config.json's rope_scaling carries them
        else:
            raise SystemExit(f"{g.path}: {name} has no Hugging Face form (e.g. llama 3's rope_freqs come from "
                             f"rope_scaling factors that the file does not keep)")
        x = dequantize(t)
        if "{x}" in hf:  # one (n_expert, rows, cols) tensor -> a matrix per expert
            out.update({f"{hf.format(x=e)}.{suffix}": x[e] for e in range(x.shape[0])})
            continue
        if base.endswith("ffn_gate_inp_shexp"):
            x = x.reshape(1, -1)  # HF's shared_expert_gate is a (1, n_embd) Linear
        if arch == "llama" and base.endswith(("attn_q", "attn_k")):
            x = unpermute(x, n_head if base.endswith("attn_q") else n_kv)
        if gemma and base.endswith("norm"):
            x = x - np.float32(1.0)
        out[f"{hf}.{suffix}"] = x
    return out


def export_config(g: GGUFFile, mistral: bool) -> dict:
    arch = g.architecture
    if arch not in FAMILIES:
        raise SystemExit(f"{g.path}: architecture {arch} is not exported (have {', '.join(FAMILIES)})")
    a = g.arch_get
    hf_arch, model_type = MISTRAL if mistral else MIXTRAL if arch == "llama" and a("expert_count") \
        else FAMILIES[arch]
    n_embd, n_head = a("embedding_length"), a("attention.head_count")
    head_dim = a("attention.key_length") or n_embd // n_head  # config.json names it only where it differs
    c = {"architectures": [hf_arch], "model_type": model_type, "hidden_size": n_embd,
         "intermediate_size": a("feed_forward_length"), "num_hidden_layers": a("block_count"),
         "num_attention_heads": n_head, "num_key_value_heads": a("attention.head_count_kv") or n_head,
         **({"head_dim": head_dim} if head_dim != n_embd // n_head or arch.startswith("gemma") else {}),
         "max_position_embeddings": a("context_length"),
         "rms_norm_eps": a("attention.layer_norm_rms_epsilon"), "rope_theta": a("rope.freq_base", 10000.0),
         "vocab_size": a("vocab_size") or g.tensors["token_embd.weight"].shape[0],
         "tie_word_embeddings": "output.weight" not in g.tensors, "torch_dtype": "bfloat16",
         "hidden_act": "gelu_pytorch_tanh" if arch.startswith("gemma") else "silu"}
    for typ, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"), ("unk", "unknown")):
        if (i := g.get(f"tokenizer.ggml.{key}_token_id")) is not None:
            c[f"{typ}_token_id"] = i
    if (kind := a("rope.scaling.type")) in ("linear", "yarn"):
        c["rope_scaling"] = {"rope_type": kind, "factor": a("rope.scaling.factor")}
        if kind == "yarn":
            c["rope_scaling"]["original_max_position_embeddings"] = a("rope.scaling.original_context_length")
    if a("expert_count"):
        c |= {"num_local_experts" if arch == "llama" else "num_experts": a("expert_count"),
              "num_experts_per_tok": a("expert_used_count")}
        if arch != "llama":
            c |= {"moe_intermediate_size": a("expert_feed_forward_length"), "decoder_sparse_step": 1,
                  "norm_topk_prob": arch == "qwen3moe", "mlp_only_layers": []}
        if a("expert_shared_feed_forward_length"):
            c["shared_expert_intermediate_size"] = a("expert_shared_feed_forward_length")
    if arch == "gemma2":
        c |= {"attn_logit_softcapping": a("attn_logit_softcapping"), "query_pre_attn_scalar": head_dim,
              "final_logit_softcapping": a("final_logit_softcapping"), "sliding_window": a("attention.sliding_window")}
    if arch == "gemma3":
        pattern = a("attention.sliding_window_pattern", 6)
        c |= {"sliding_window": a("attention.sliding_window"), "sliding_window_pattern": pattern,
              "rope_local_base_freq": a("rope.freq_base_swa", 10000.0), "query_pre_attn_scalar": head_dim,
              "final_logit_softcapping": a("final_logit_softcapping"),
              "layer_types": ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                              for i in range(a("block_count"))]}
    if arch == "phi3":
        c["original_max_position_embeddings"] = a("rope.scaling.original_context_length") or a("context_length")
        c["partial_rotary_factor"] = a("rope.dimension_count", head_dim) * n_head / n_embd
        c["sliding_window"] = a("attention.sliding_window") or None
        if "rope_factors_long.weight" in g.tensors:
            c["rope_scaling"] = {"type": "longrope",
                                 "long_factor": dequantize(g.tensors["rope_factors_long.weight"]).tolist(),
                                 "short_factor": dequantize(g.tensors["rope_factors_short.weight"]).tolist()}
    return c


def _real_tokens(tokens: list[str]) -> list[str]:
    """The vocabulary without convert's [PAD<i>] fill at its end."""
    n = len(tokens)
    while n and tokens[n - 1] == f"[PAD{n - 1}]":
        n -= 1
    return tokens[:n]


def _added(i: int, text: str, special: bool) -> dict:
    return {"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def export_bpe(g: GGUFFile, out: Path) -> list[dict]:
    pre = g.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise SystemExit(f"{g.path}: pre-tokenizer {pre!r} is not exported (have {', '.join(PRE_TOKENIZERS)})")
    normalizer, pre_tokenizer = PRE_TOKENIZERS[pre]
    tokens = _real_tokens(g.get("tokenizer.ggml.tokens"))
    types = [int(t) for t in g.get("tokenizer.ggml.token_type")]
    added = [_added(i, t, types[i] == CONTROL) for i, t in enumerate(tokens) if types[i] in (CONTROL, USER_DEFINED)]
    add_bos = bool(g.get("tokenizer.ggml.add_bos_token", False))
    bos = g.get("tokenizer.ggml.bos_token_id")
    bos = None if bos is None else int(bos)
    post = ({"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": tokens[bos], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {tokens[bos]: {"id": tokens[bos], "ids": [bos], "tokens": [tokens[bos]]}}}
            if add_bos and bos is not None else {**_BYTES_ONLY, "trim_offsets": False})
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
          "pre_tokenizer": pre_tokenizer, "post_processor": post, "decoder": {**_BYTE_LEVEL},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                    "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                    "vocab": {t: i for i, t in enumerate(tokens)},  # added ones too: ids are kept only so
                    "merges": list(g.get("tokenizer.ggml.merges") or [])}}
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    return added


def export_spm(g: GGUFFile, out: Path) -> list[dict]:
    """tokenizer.model: every token as a piece with its score and type; tokens the converter took from
    tokenizer_config.json (score -1000, control or user-defined) are listed there again."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokens = _real_tokens(g.get("tokenizer.ggml.tokens"))
    scores = [float(x) for x in g.get("tokenizer.ggml.scores")]
    types = [int(t) for t in g.get("tokenizer.ggml.token_type")]
    m = pb.ModelProto()
    added = []
    for i, text in enumerate(tokens):
        p = m.pieces.add()
        listed = scores[i] == -1000.0 and types[i] in (CONTROL, USER_DEFINED)
        p.piece = text.replace(" ", "\u2581") if listed and types[i] == USER_DEFINED else text
        p.score, p.type = float(scores[i]), types[i]
        if listed:
            added.append(_added(i, p.piece, types[i] == CONTROL))
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.byte_fallback = BYTE in types
    for field, key in (("unk_id", "unknown"), ("bos_id", "bos"), ("eos_id", "eos"), ("pad_id", "padding")):
        setattr(m.trainer_spec, field, g.get(f"tokenizer.ggml.{key}_token_id", -1))
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = bool(g.get("tokenizer.ggml.add_space_prefix", True))
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    (out / "tokenizer.model").write_bytes(m.SerializeToString())
    return added


def export_tokenizer_config(g: GGUFFile, out: Path, added: list[dict]) -> None:
    tokens = g.get("tokenizer.ggml.tokens")
    tc = {"added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added},
          # phi3's converter takes GPT2Tokenizer (phi-4) for a BPE vocabulary
          "tokenizer_class": ("GPT2Tokenizer" if g.architecture == "phi3" else "PreTrainedTokenizerFast")
          if g.get("tokenizer.ggml.model") == "gpt2"
          else "GemmaTokenizer" if g.architecture.startswith("gemma") else "LlamaTokenizer",
          "clean_up_tokenization_spaces": False, "model_max_length": g.arch_get("context_length")}
    for typ, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"), ("unk", "unknown")):
        if (i := g.get(f"tokenizer.ggml.{key}_token_id")) is not None:
            tc[f"{typ}_token"] = tokens[i]
    for typ in ("bos", "eos", "sep"):
        if (flag := g.get(f"tokenizer.ggml.add_{typ}_token")) is not None:
            tc[f"add_{typ}_token"] = bool(flag)
    if (prefix := g.get("tokenizer.ggml.add_space_prefix")) is not None and g.architecture == "llama":
        tc["add_prefix_space"] = bool(prefix)
    if (template := g.get("tokenizer.chat_template")) is not None:
        tc["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False), encoding="utf-8")


def export_model_card(g: GGUFFile, out: Path) -> None:
    """README.md front matter with the general.* keys under the model-card names gguf-py's Metadata reads
    (llama.cpp's own convention for name, basename, size_label ...; HF's for license, tags, language)."""
    keys = {k: f"general.{k}" for k in ("name", "author", "version", "organization", "description", "finetune",
                                        "basename", "size_label", "license", "tags")}
    keys["language"] = "general.languages"
    lines = [f"{key}: {json.dumps(value if isinstance(value, str) else [str(v) for v in value])}"
             for key, gguf_key in keys.items() if (value := g.get(gguf_key)) is not None]
    if lines:
        (out / "README.md").write_text("---\n" + "\n".join(lines) + "\n---\n", encoding="utf-8")


def export(path: Path, out: Path, dtype: str = "BF16", mistral: bool = False) -> Path:
    g = GGUFFile(path)
    out.mkdir(parents=True, exist_ok=True)
    config = export_config(g, mistral)
    model = g.get("tokenizer.ggml.model")
    if model == "gpt2":
        added = export_bpe(g, out)
    elif model == "llama":
        added = export_spm(g, out)
    else:
        raise SystemExit(f"{path}: tokenizer model {model!r} is not exported (gpt2 and llama are)")
    export_tokenizer_config(g, out, added)
    export_model_card(g, out)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    safetensors.write(out / "model.safetensors", export_tensors(g), dtype)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--dtype", default="bf16", choices=("bf16", "f16", "f32"))
    p.add_argument("--mistral", action="store_true", help="label a llama file as MistralForCausalLM")
    a = p.parse_args(argv)
    print(export(a.model, a.out, a.dtype.upper(), a.mistral))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
