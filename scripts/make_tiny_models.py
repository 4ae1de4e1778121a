#!/usr/bin/env python3
"""Tiny random-weight GGUFs, one per architecture, for checking llamacpy against llama.cpp (tests/data/arch/).

    python3 scripts/make_tiny_models.py OUT_DIR [NAME ...]     # default: every SPECS model (BENCH_SPECS by name)

Each model has 2-3 layers and small widths, a real vocabulary (copied with its tokenizer from the catalog's
smollm2-135m-instruct, so prompts tokenize as text), seeded weights (the same bytes on every run: the recordings
name each file's sha256), and every hyper-parameter its architecture reads set away from its default, so that a
feature llamacpy lacks changes the output. Matrices are Q8_0 (exact in both programs' kernels), norms F32; the
`-iq4_nl`, `-iq4_xs` and `-mxfp4` models hold their matrices in those types instead (IQ4 quantized by llamacpy's
quantizer, which writes llama-quantize's bytes; MXFP4 by gguf-py).
Embeddings and outputs are scaled so that the logits spread over several nats: greedy picks are not near-ties.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

VOCAB_MODEL = "smollm2-135m-instruct"  # its tokenizer.* keys are copied


@dataclass
class Spec:
    """One tiny model: hyper-parameters (under the architecture's prefix) and how its layers' tensors look."""

    arch: str
    seed: int
    n_embd: int = 128
    n_layer: int = 3
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 32
    n_ff: int = 256
    kv: dict = field(default_factory=dict)      # more `{arch}.` keys
    extra: Callable | None = None               # (spec, rng) -> {tensor name: array} besides the llama-like ones
    qk_norm: bool = False                       # attn_q_norm / attn_k_norm per head (qwen3, olmo2)
    tied: bool = False                          # no output.weight: the embedding is the output
    olmo2: bool = False                         # no pre-norms; post-norms; q/k norms over all heads at once
    fused: bool = False                         # phi3: one attn_qkv matrix, one ffn_up holding gate then up
    post_norms: bool = False                    # gemma: post_attention_norm and post_ffw_norm besides the pre-norms
    embd_std: float = 1.0                       # of token_embd (with tied outputs it sets the logits' spread)
    qtype: str = "Q8_0"                         # of every matrix (token_embd and output included)
    experts: tuple[int, int] = (0, 0)           # (n_expert, n_used): routed SwiGLU experts of n_ff rows each
    shared: str = ""                            # a shared expert besides them: "plain" or "gated" (qwen2moe)
    qk_norm_all: bool = False                   # attn_q_norm / attn_k_norm over all heads at once (olmoe)
    qkv_bias: bool = False                      # attn_q/k/v.bias
    gated: bool = True                          # ffn_gate (SwiGLU); False: no gate matrix (arcee's relu^2)
    ffn_norm: str = "ffn_norm"                  # the FFN pre-norm's name (seed_oss: post_attention_norm)
    pooling: int = -1                           # >= 0: an encoder (bert family) with this pooling_type (4: rank)
    oai: bool = False                           # gpt-oss: output bias, attention sinks, router and expert biases


def _longrope_factors(spec: Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    # phi3's LongRoPE: short factors near 1, long ones up to 8 (here random), one per rotated pair
    n = spec.head_dim // 2
    return {"rope_factors_long.weight": rng.uniform(1.0, 8.0, n).astype(np.float32),
            "rope_factors_short.weight": rng.uniform(1.0, 1.5, n).astype(np.float32)}


def _llama3_rope_freqs(spec: Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    # llama 3.x's rope scaling as convert_hf_to_gguf.py writes it: one factor per rotated pair, 1 for high
    # frequencies, up to `factor` for low ones (here random in [1, 8] so that every pair is changed)
    return {"rope_freqs.weight": rng.uniform(1.0, 8.0, spec.head_dim // 2).astype(np.float32)}


SPECS = {
    "llama": Spec("llama", 11, kv={"rope.freq_base": 50000.0}),
    "llama3": Spec("llama", 12, kv={"rope.freq_base": 500000.0}, extra=_llama3_rope_freqs),
    "qwen3": Spec("qwen3", 13, head_dim=48, qk_norm=True, tied=True, kv={"rope.freq_base": 1000000.0}),
    "smollm3": Spec("smollm3", 15, n_layer=4, tied=True, kv={"rope.freq_base": 2000000.0}),  # layer 3: no RoPE
    "olmo2": Spec("olmo2", 16, olmo2=True, n_head_kv=4, kv={"rope.freq_base": 500000.0}),
    "phi3": Spec("phi3", 17, fused=True, kv={"rope.freq_base": 10000.0}),
    # the recorder's context of 512 is past the original 256: the long factors, and the attention factor
    "phi3-longrope": Spec("phi3", 39, fused=True, extra=_longrope_factors,
                          kv={"rope.freq_base": 10000.0, "rope.scaling.original_context_length": 256,
                              "rope.scaling.attn_factor": 1.19}),
    "gemma2": Spec("gemma2", 18, post_norms=True, tied=True, embd_std=0.3,
                   kv={"rope.freq_base": 10000.0, "attention.sliding_window": 6, "attn_logit_softcapping": 2.0,
                       "final_logit_softcapping": 8.0}),
    "gemma3": Spec("gemma3", 19, n_layer=4, post_norms=True, qk_norm=True, tied=True, embd_std=0.3,
                   kv={"rope.freq_base": 200000.0, "rope.freq_base_swa": 5000.0, "attention.sliding_window": 5,
                       "attention.sliding_window_pattern": 3}),
    "llama-iq4_nl": Spec("llama", 20, n_embd=160, qtype="IQ4_NL"),  # 5 blocks per row: an odd count
    "llama-iq4_xs": Spec("llama", 21, n_embd=256, head_dim=64, n_ff=512, qtype="IQ4_XS"),
    "llama-mxfp4": Spec("llama", 22, n_embd=160, qtype="MXFP4"),
    # the types run through gguf-py's dequantizer (256-value blocks: n_embd 256); TQ by gguf-py's quantizer,
    # the grid types as random codes with a scale (gguf-py cannot quantize them)
    **{f"llama-{t.lower()}": Spec("llama", seed, n_embd=256, head_dim=64, n_ff=512, qtype=t)
       for t, seed in (("TQ1_0", 41), ("TQ2_0", 42), ("IQ2_XXS", 43), ("IQ2_XS", 60), ("IQ2_S", 45),
                       ("IQ3_XXS", 46), ("IQ3_S", 47), ("IQ1_S", 48), ("IQ1_M", 49))},
    "mixtral": Spec("llama", 28, n_ff=64, experts=(8, 2), kv={"rope.freq_base": 1000000.0}),
    "qwen3moe": Spec("qwen3moe", 24, head_dim=48, n_ff=64, qk_norm=True, experts=(8, 3),
                     kv={"rope.freq_base": 1000000.0}),
    "qwen2moe": Spec("qwen2moe", 25, n_ff=64, experts=(6, 2), shared="gated", kv={"rope.freq_base": 1000000.0}),
    "olmoe": Spec("olmoe", 26, n_ff=64, n_head_kv=4, qk_norm_all=True, experts=(16, 4),
                  kv={"rope.freq_base": 10000.0}),
    "granitemoe": Spec("granitemoe", 27, n_ff=64, experts=(8, 2), shared="plain",
                       kv={"rope.freq_base": 10000.0, "embedding_scale": 6.0, "residual_scale": 0.35,
                           "attention.scale": 0.09, "logit_scale": 2.5}),
    "exaone": Spec("exaone", 29, kv={"rope.freq_base": 1000000.0}),
    "internlm2": Spec("internlm2", 30, kv={"rope.freq_base": 1000000.0}),
    "ernie4_5": Spec("ernie4_5", 31, tied=True, kv={"rope.freq_base": 500000.0}),
    "seed_oss": Spec("seed_oss", 35, head_dim=48, qkv_bias=True, ffn_norm="post_attention_norm",
                     kv={"rope.freq_base": 10000000.0}),
    "arcee": Spec("arcee", 33, gated=False, kv={"rope.freq_base": 10000.0}),
    # YaRN (factor 4 from an original context of 16, the betas set) and llama 4's q temperature past position 16
    "mistral3": Spec("mistral3", 34, kv={"rope.freq_base": 1000000.0, "rope.scaling.type": "yarn",
                                         "rope.scaling.factor": 4.0, "rope.scaling.original_context_length": 16,
                                         "rope.scaling.yarn_beta_fast": 16.0, "rope.scaling.yarn_beta_slow": 2.0,
                                         "attention.temperature_scale": 0.3}),
    # encoders, recorded through llama-server's /v1/embeddings (and /v1/rerank for the classification head)
    "nomic-bert": Spec("nomic-bert", 36, n_head_kv=4, fused=True, pooling=1, kv={"rope.freq_base": 1000.0}),
    "jina-bert-v2": Spec("jina-bert-v2", 37, n_head_kv=4, pooling=1),
    "bert-rerank": Spec("bert", 38, n_head_kv=4, pooling=4),
    # YaRN, a window of 5 on the even layers, sinks, biased experts with SOFTMAX_WEIGHT gating and swiglu_oai
    "gpt-oss": Spec("gpt-oss", 40, n_ff=64, experts=(8, 2), qkv_bias=True, oai=True, ffn_norm="post_attention_norm",
                    kv={"rope.freq_base": 150000.0, "rope.scaling.type": "yarn", "rope.scaling.factor": 8.0,
                        "rope.scaling.original_context_length": 64, "attention.sliding_window": 5}),
    "granite": Spec("granite", 14, kv={"rope.freq_base": 10000.0, "embedding_scale": 6.0, "residual_scale": 0.35,
                                       "attention.scale": 0.09, "logit_scale": 2.5}),
}


def _experts(w: gguf.GGUFWriter, p: str, s: Spec, mat: Callable, matrix: Callable) -> None:
    """A MoE layer's FFN: the router (F32, as convert_hf_to_gguf.py writes it; spread so that no two experts
    nearly tie), the experts as 3-D tensors (n_expert, rows, n_in), and the shared expert if any."""
    n_expert, e, f = s.experts[0], s.n_embd, s.n_ff
    w.add_tensor(p + "ffn_gate_inp.weight", mat(n_expert, e, 0.15))
    matrix(w, p + "ffn_gate_exps.weight", np.stack([mat(f, e, 0.1) for _ in range(n_expert)]))
    matrix(w, p + "ffn_up_exps.weight", np.stack([mat(f, e, 0.1) for _ in range(n_expert)]))
    matrix(w, p + "ffn_down_exps.weight", np.stack([mat(e, f, 0.1) for _ in range(n_expert)]))
    if s.shared:
        matrix(w, p + "ffn_gate_shexp.weight", mat(f, e, 0.1))
        matrix(w, p + "ffn_up_shexp.weight", mat(f, e, 0.1))
        matrix(w, p + "ffn_down_shexp.weight", mat(e, f, 0.1))
    if s.shared == "gated":
        w.add_tensor(p + "ffn_gate_inp_shexp.weight", mat(1, e, 0.2)[0])
    if s.oai:  # biases of the router and of each expert's up, gate and down rows
        w.add_tensor(p + "ffn_gate_inp.bias", mat(1, n_expert, 0.3)[0])
        for m, rows in (("up", f), ("gate", f), ("down", e)):
            w.add_tensor(p + f"ffn_{m}_exps.bias", mat(n_expert, rows, 0.3))


# not recorded: models for speed (scripts/bench_vs_llama_cpp.py -m PATH), written the same way
BENCH_SPECS = {
    # Qwen3-30B-A3B's shape, scaled down: 32 experts of 512 rows, 4 chosen per token
    "bench-qwen3moe": Spec("qwen3moe", 50, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, head_dim=64, n_ff=512,
                           qk_norm=True, tied=True, experts=(32, 4), kv={"rope.freq_base": 1000000.0}),
}


def _copy_tokenizer(w: gguf.GGUFWriter, source: Path) -> int:
    r = gguf.GGUFReader(source)
    n_vocab = 0
    for f in r.fields.values():
        if not f.name.startswith("tokenizer."):
            continue
        value = f.contents()
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(f.name, value, vtype, sub_type=f.types[-1])
            if f.name == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            w.add_key_value(f.name, value, vtype)
    return n_vocab


# the grid types gguf-py cannot quantize: the f16 scale's byte offset in a block (IQ1_M spreads it, see below)
SCALE_OFFSET = {"IQ1_S": 0, "IQ2_XXS": 0, "IQ2_XS": 0, "IQ2_S": 0, "IQ3_XXS": 0, "IQ3_S": 0, "IQ1_M": None}


def _random_blocks(name: str, x: np.ndarray, qtype: str) -> np.ndarray:
    """Blocks of random codes (any bits are valid weights of these types), seeded by the tensor's name, with
    the block scale set so that the weights' spread is x's."""
    t = gguf.GGMLQuantizationType[qtype]
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[t]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    rows = int(np.prod(x.shape[:-1]))
    data = rng.integers(0, 256, (rows, x.shape[-1] // block_elems * block_bytes), dtype=np.uint8)
    blocks = data.reshape(-1, block_bytes)

    def set_scale(d: float) -> None:
        h = np.full(len(blocks), d, np.float16).view(np.uint16)
        if qtype == "IQ1_M":  # the f16 is the top nibbles of its four u16 scales (bytes 48-55)
            sc = blocks[:, 48:56].copy().view(np.uint16)
            for k in range(4):
                sc[:, k] = (sc[:, k] & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12)
            blocks[:, 48:56] = sc.view(np.uint8)
        else:
            o = SCALE_OFFSET[qtype]
            blocks[:, o:o + 2] = h.view(np.uint8).reshape(-1, 2)

    set_scale(1.0)
    spread = float(gguf.quants.dequantize(data, t).std())
    set_scale(float(x.std()) / spread)
    return data.reshape(*x.shape[:-1], -1)


def _quantized(w: gguf.GGUFWriter, name: str, x: np.ndarray, qtype: str) -> None:
    t = gguf.GGMLQuantizationType[qtype]
    if qtype in SCALE_OFFSET:
        w.add_tensor(name, _random_blocks(name, x, qtype), raw_dtype=t)
        return
    if qtype.startswith("IQ4"):  # gguf-py has no IQ4 quantizer
        from llamacpy.kernels.quantizers import quantize

        data = quantize(x, int(t))
    else:
        data = gguf.quants.quantize(x, t)
    w.add_tensor(name, data, raw_dtype=t)


def make(name: str, out: Path, vocab_source: Path) -> Path:
    """Write the tiny model `name` (a key of SPECS) to out/<name>.gguf."""
    s = SPECS[name] if name in SPECS else BENCH_SPECS[name]
    rng = np.random.default_rng(s.seed)
    path = out / f"{name}.gguf"
    w = gguf.GGUFWriter(None, s.arch)  # collects; llamacpy's writer writes (_finish)
    w.add_name(f"tiny random model {s.seed}")  # not the family name: llama.cpp keys vocab quirks on it (phi3)
    a = s.arch
    w.add_uint32(f"{a}.context_length", 2048)
    w.add_uint32(f"{a}.embedding_length", s.n_embd)
    w.add_uint32(f"{a}.block_count", s.n_layer)
    w.add_uint32(f"{a}.feed_forward_length", s.n_ff)
    w.add_uint32(f"{a}.attention.head_count", s.n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", s.n_head_kv)
    w.add_uint32(f"{a}.attention.key_length", s.head_dim)
    w.add_uint32(f"{a}.attention.value_length", s.head_dim)
    w.add_uint32(f"{a}.rope.dimension_count", s.head_dim)
    if s.pooling >= 0:
        w.add_float32(f"{a}.attention.layer_norm_epsilon", 1e-12)
        w.add_uint32(f"{a}.pooling_type", s.pooling)
        w.add_bool(f"{a}.attention.causal", False)
        w.add_uint32("tokenizer.ggml.token_type_count", 2)
    else:
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    for key, value in s.kv.items():
        add = w.add_string if isinstance(value, str) else w.add_float32 if isinstance(value, float) else w.add_uint32
        add(f"{a}.{key}", value)
    if s.experts[0]:
        w.add_uint32(f"{a}.expert_count", s.experts[0])
        w.add_uint32(f"{a}.expert_used_count", s.experts[1])
        w.add_uint32(f"{a}.expert_feed_forward_length", s.n_ff)
        if s.shared:
            w.add_uint32(f"{a}.expert_shared_feed_forward_length", s.n_ff)
    w.add_uint32("general.file_type", gguf.LlamaFileType["MOSTLY_MXFP4_MOE" if s.qtype == "MXFP4" else f"MOSTLY_{s.qtype}"])
    n_vocab = _copy_tokenizer(w, vocab_source)
    w.add_uint32(f"{a}.vocab_size", n_vocab)

    def mat(n_out: int, n_in: int, std: float) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in)) * std).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return rng.uniform(0.5, 1.5, n).astype(np.float32)

    e, hd = s.n_embd, s.head_dim

    def matrix(w: gguf.GGUFWriter, name: str, x: np.ndarray) -> None:
        _quantized(w, name, x, s.qtype)

    matrix(w, "token_embd.weight", mat(n_vocab, e, s.embd_std))
    if s.pooling >= 0:
        _encoder(w, s, rng, mat, norm, matrix)
        return _finish(w, path)
    w.add_tensor("output_norm.weight", norm(e))
    if not s.tied:
        matrix(w, "output.weight", mat(n_vocab, e, 0.5))
    for name_, x in (s.extra(s, rng) if s.extra else {}).items():
        w.add_tensor(name_, x)
    for i in range(s.n_layer):
        p = f"blk.{i}."
        if not s.olmo2:
            w.add_tensor(p + "attn_norm.weight", norm(e))
        # small enough that attention scores spread over a few units: a near one-hot softmax would turn rounding
        # differences into a different key winning
        q, k, v = mat(s.n_head * hd, e, 0.1), mat(s.n_head_kv * hd, e, 0.1), mat(s.n_head_kv * hd, e, 0.2)
        if s.fused:
            matrix(w, p + "attn_qkv.weight", np.concatenate([q, k, v]))
        else:
            matrix(w, p + "attn_q.weight", q)
            matrix(w, p + "attn_k.weight", k)
            matrix(w, p + "attn_v.weight", v)
        if s.qkv_bias:
            for name_, n in (("q", s.n_head * hd), ("k", s.n_head_kv * hd), ("v", s.n_head_kv * hd)):
                w.add_tensor(p + f"attn_{name_}.bias", (rng.standard_normal(n) * 0.3).astype(np.float32))
        matrix(w, p + "attn_output.weight", mat(e, s.n_head * hd, 0.1))
        if s.oai:
            w.add_tensor(p + "attn_output.bias", (rng.standard_normal(e) * 0.1).astype(np.float32))
            w.add_tensor(p + "attn_sinks.weight", rng.uniform(-1.0, 2.0, s.n_head).astype(np.float32))
        if s.qk_norm:
            w.add_tensor(p + "attn_q_norm.weight", norm(hd))
            w.add_tensor(p + "attn_k_norm.weight", norm(hd))
        if s.olmo2 or s.qk_norm_all:
            w.add_tensor(p + "attn_q_norm.weight", norm(s.n_head * hd))
            w.add_tensor(p + "attn_k_norm.weight", norm(s.n_head_kv * hd))
        if s.olmo2:
            w.add_tensor(p + "post_attention_norm.weight", norm(e))
            w.add_tensor(p + "post_ffw_norm.weight", norm(e))
        else:
            w.add_tensor(p + s.ffn_norm + ".weight", norm(e))
        if s.post_norms:
            w.add_tensor(p + "post_attention_norm.weight", norm(e))
            w.add_tensor(p + "post_ffw_norm.weight", norm(e))
        if s.experts[0]:
            _experts(w, p, s, mat, matrix)
            continue
        gate, up = mat(s.n_ff, e, 0.1), mat(s.n_ff, e, 0.1)
        if s.fused:
            matrix(w, p + "ffn_up.weight", np.concatenate([gate, up]))
        else:
            if s.gated:
                matrix(w, p + "ffn_gate.weight", gate)
            matrix(w, p + "ffn_up.weight", up)
        matrix(w, p + "ffn_down.weight", mat(e, s.n_ff, 0.1))
    return _finish(w, path)


def _finish(w: gguf.GGUFWriter, path: Path) -> Path:
    from llamacpy.convert.common import write_collected

    return write_collected(w, path)


def _encoder(w: gguf.GGUFWriter, s: Spec, rng: np.random.Generator, mat: Callable, norm: Callable,
             matrix: Callable) -> None:
    """The bert family's tensors: token types, embedding LayerNorm, post-norm layers with biases; bert has
    position embeddings, nomic-bert a fused q/k/v and a SwiGLU FFN without biases, jina-bert-v2 a GEGLU up
    matrix (gate rows first); pooling 4 adds the classification head (cls, cls.output)."""
    e, f = s.n_embd, s.n_ff

    def bias(n: int) -> np.ndarray:
        return (rng.standard_normal(n) * 0.1).astype(np.float32)

    w.add_tensor("token_types.weight", mat(2, e, 0.3))
    if s.arch == "bert":
        w.add_tensor("position_embd.weight", mat(2048, e, 0.3))
    w.add_tensor("token_embd_norm.weight", norm(e))
    w.add_tensor("token_embd_norm.bias", bias(e))
    for i in range(s.n_layer):
        p = f"blk.{i}."
        q, k, v = mat(e, e, 0.1), mat(e, e, 0.1), mat(e, e, 0.2)
        if s.fused:
            matrix(w, p + "attn_qkv.weight", np.concatenate([q, k, v]))
        else:
            for m, x in (("q", q), ("k", k), ("v", v)):
                matrix(w, p + f"attn_{m}.weight", x)
                w.add_tensor(p + f"attn_{m}.bias", bias(e))
        matrix(w, p + "attn_output.weight", mat(e, e, 0.1))
        w.add_tensor(p + "attn_output.bias", bias(e))
        w.add_tensor(p + "attn_output_norm.weight", norm(e))
        w.add_tensor(p + "attn_output_norm.bias", bias(e))
        if s.arch == "nomic-bert":
            matrix(w, p + "ffn_up.weight", mat(f, e, 0.1))
            matrix(w, p + "ffn_gate.weight", mat(f, e, 0.1))
            matrix(w, p + "ffn_down.weight", mat(e, f, 0.1))
        else:
            n_up = 2 * f if s.arch == "jina-bert-v2" else f
            matrix(w, p + "ffn_up.weight", mat(n_up, e, 0.1))
            w.add_tensor(p + "ffn_up.bias", bias(n_up))
            matrix(w, p + "ffn_down.weight", mat(e, f, 0.1))
            w.add_tensor(p + "ffn_down.bias", bias(e))
        w.add_tensor(p + "layer_output_norm.weight", norm(e))
        w.add_tensor(p + "layer_output_norm.bias", bias(e))
    if s.pooling == 4:
        matrix(w, "cls.weight", mat(e, e, 0.2))
        w.add_tensor("cls.bias", bias(e))
        w.add_tensor("cls.output.weight", mat(1, e, 0.5))
        w.add_tensor("cls.output.bias", bias(1))


def vocab_source() -> Path:
    from llamacpy.catalog import resolve_model

    return resolve_model(VOCAB_MODEL, lambda *_: None)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    src = vocab_source()
    for name in argv[1:] or list(SPECS):
        print(make(name, out, src))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
