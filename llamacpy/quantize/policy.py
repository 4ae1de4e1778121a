"""Which type each tensor gets: llama.cpp's rules (src/llama-quant.cpp), for the file types llamacpy writes.

- Only weights are quantized: 2-D (or 3-D expert) tensors whose name ends in "weight", not norms, not
  output.weight with --leave-output-tensor, not BERT's position/token-type embeddings (and llama.cpp's
  other exceptions by name). Everything else keeps its type.
- The mixture of each file type (llama_tensor_get_type_impl): output.weight (and token_embd.weight when the
  model has no output.weight) become Q6_K but for Q8_0 files; Q4_K_M puts Q6_K on the attn_v and ffn_down of
  the first and last eighth of the layers and every third one between; Q3_K_M, Q2_K, Q4_K_S ... upgrade attn_v,
  ffn_down and attn_output as llama.cpp does, by layer, by grouped-query ratio and expert count.
  --output-tensor-type, --token-embedding-type, --tensor-type and --pure override it as in llama.cpp.
- A row that is not a whole number of the chosen type's blocks falls back (Q6_K -> Q8_0, Q4_K -> Q5_0,
  Q5_K -> Q5_1, Q2_K/Q3_K -> Q4_0; a 32-block type that still does not fit -> F16), with llama.cpp's warning.

The branches of the IQ1/IQ2/IQ3 file types are not ported: llamacpy does not write those types.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..gguf import BLOCK_LAYOUT, GGMLType
from ..gguf.writer import n_dims
from .ftypes import QuantizeError, type_name

FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.F64, GGMLType.I8, GGMLType.I16,
               GGMLType.I32, GGMLType.I64)

# names (substrings) llama.cpp never quantizes, whatever the architecture (tensor_allows_quantization)
KEEP_SUBSTRINGS = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
    ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
KEEP_NAMES = ("position_embd.weight", "token_types.weight")  # BERT's (LLM_TENSOR_POS_EMBD, TOKEN_TYPES)
FALLBACK = {GGMLType.Q2_K: GGMLType.Q4_0, GGMLType.Q3_K: GGMLType.Q4_0, GGMLType.Q4_K: GGMLType.Q5_0,
            GGMLType.Q5_K: GGMLType.Q5_1, GGMLType.Q6_K: GGMLType.Q8_0, GGMLType.IQ4_XS: GGMLType.IQ4_NL}


@dataclass
class QuantizeParams:
    """llama_model_quantize_params: every option of `llamacpy quantize`, with llama.cpp's defaults."""

    ftype: int = 7  # llama_ftype (7 = MOSTLY_Q8_0)
    nthread: int = 0  # <= 0: all CPUs
    allow_requantize: bool = False
    quantize_output_tensor: bool = True  # False with --leave-output-tensor
    only_copy: bool = False  # COPY
    pure: bool = False
    dry_run: bool = False
    output_tensor_type: GGMLType | None = None
    token_embedding_type: GGMLType | None = None
    tensor_types: list[tuple[str, GGMLType]] = field(default_factory=list)  # --tensor-type regex=type
    # --imatrix: per weight name, f32[n_mat * ne0] importance (imatrix_file.Imatrix.importance())
    imatrix: dict[str, np.ndarray] | None = None
    imatrix_kvs: list[bytes] = field(default_factory=list)  # the quantize.imatrix.* entries for the output


def requires_imatrix(name: str, new: GGMLType, ftype: int) -> bool:
    """tensor_requires_imatrix for the types llamacpy writes: the Q2_K tensors of a Q2_K_S file."""
    return category(name) not in ("output", "token_embd") and new == GGMLType.Q2_K and ftype == 21


def is_quantized(t: GGMLType) -> bool:
    return t not in FLOAT_TYPES


def block_size(t: GGMLType) -> int:
    if t not in BLOCK_LAYOUT:
        raise QuantizeError(f"type {type_name(t)} is not known to llamacpy")
    return BLOCK_LAYOUT[t][0]


def allows_quantization(p: QuantizeParams, name: str, ne: tuple[int, ...]) -> bool:
    """tensor_allows_quantization: weights of 2 or 3 dimensions, minus llama.cpp's exceptions by name."""
    if p.only_copy or n_dims(ne) < 2:
        return False
    if not name.endswith("weight") or name in KEEP_NAMES or any(s in name for s in KEEP_SUBSTRINGS):
        return False
    return p.quantize_output_tensor or name != "output.weight"


def category(name: str) -> str:
    """tensor_get_category: output, token_embd, attn_qkv, attn_kv_b, attn_v, attn_k, attn_q, attn_output,
    ffn_up, ffn_gate, ffn_down or other (the first match in llama.cpp's order)."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for cat in ("attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight", "attn_k.weight", "attn_q.weight",
                "attn_output.weight", "ffn_up", "ffn_gate", "ffn_down"):
        if cat in name:
            return cat.removesuffix(".weight")
    return "other"


# category_is_attn_v: the tensors most sensitive to quantization (llama.cpp's later attn_qkv branch is never reached)
ATTN_V = ("attn_v", "attn_qkv", "attn_kv_b")


@dataclass(frozen=True)
class ModelFacts:
    """What llama_tensor_get_type_impl reads of the model besides the tensor: from the GGUF's metadata."""

    arch: str = "llama"
    n_layer: int = 0
    n_gqa: int = 1  # n_head / n_head_kv of layer 0
    n_expert: int = 0
    is_70b: bool = False  # LLM_TYPE_70B: llama (grouped-query) or qwen2 with 80 layers

    @classmethod
    def from_metadata(cls, md: dict) -> ModelFacts:
        arch = str(md.get("general.architecture", "llama"))

        def first(key: str, default: int) -> int:
            v = md.get(f"{arch}.{key}", default)
            v = v[0] if isinstance(v, (list, tuple)) and v else v
            return int(v) if v is not None else default

        n_layer, n_head = first("block_count", 0), first("attention.head_count", 1)
        n_head_kv = first("attention.head_count_kv", n_head) or n_head
        is_70b = n_layer == 80 and (arch == "qwen2" or (arch == "llama" and n_head != n_head_kv))
        return cls(arch, n_layer, n_head // n_head_kv if n_head_kv else 1, first("expert_count", 0), is_70b)


def use_more_bits(i: int, n: int) -> bool:
    """Layers that get the bigger type in the _M mixtures: the first and last eighth, and every third between
    (C's integer division and remainder; i - n/8 is never negative where the remainder is looked at)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class TypeChooser:
    """llama_tensor_get_type for one file: call `choose(name, type, ne)` for each tensor in llama.cpp's order
    (the mixtures count attn_v and ffn_down tensors as they go)."""

    def __init__(self, p: QuantizeParams, default: GGMLType, facts: ModelFacts, names: list[str],
                 warn: Callable[[str], None], has_imatrix: bool = False):
        self.p, self.default, self.facts, self.warn = p, default, facts, warn
        self.has_imatrix = has_imatrix
        self.tied = "output.weight" not in names  # token_embd doubles as the output
        self.patterns = [(re.compile(pat), t) for pat, t in p.tensor_types]
        self.n_fallback = 0
        self.n_attention_wv = sum(category(n) in ATTN_V for n in names)
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0

    def choose(self, name: str, current: GGMLType, ne: tuple[int, ...]) -> GGMLType:
        p, cat = self.p, category(name)
        if not allows_quantization(p, name, ne):
            return current
        if p.token_embedding_type is not None and cat == "token_embd":
            named = name == "per_layer_token_embd.weight" and any(pat.search(name) for pat, _ in self.patterns)
            if not named:
                return p.token_embedding_type
        if p.output_tensor_type is not None and cat == "output":
            return p.output_tensor_type
        new = self.default
        if not is_quantized(new):
            return new
        manual = next((t for pat, t in self.patterns if pat.search(name)), None)
        if manual is not None:
            if manual != new:
                self.warn(f"llama_tensor_get_type: {name:<36s} - applying manual override: "
                          f"{type_name(new)} -> {type_name(manual)}")
            new = manual
        elif not p.pure:
            new = self._mixture(name, new, ne, cat)
        return self._fallback(name, new, ne[0])

    def _layer(self, name: str, i: int) -> int:
        """layer_info: the running count, or (with experts) the layer number in the name."""
        if self.facts.n_expert <= 1:
            return i
        m = re.match(r"blk\.(\d+)\.", name)
        if not m:
            raise QuantizeError(f"Failed to determine layer for tensor {name}")
        layer = int(m.group(1))
        if layer >= self.facts.n_layer:
            raise QuantizeError(f"Bad layer {layer} for tensor {name}. Must be in [0, {self.facts.n_layer})")
        return layer

    def _mixture(self, name: str, new: GGMLType, ne: tuple[int, ...], cat: str) -> GGMLType:
        """llama_tensor_get_type_impl for the file types llamacpy writes."""
        f, ft, T = self.facts, self.p.ftype, GGMLType
        if cat == "output" or (self.tied and cat == "token_embd"):
            if self.p.output_tensor_type is not None:
                return self.p.output_tensor_type
            if f.arch == "falcon" or ne[0] % block_size(new):
                return T.Q8_0
            return T.Q6_K if new != T.Q8_0 else new
        if cat == "token_embd":
            return new
        if cat in ATTN_V:
            if ft == 10:  # Q2_K
                new = T.Q4_K if f.n_gqa >= 4 else T.Q3_K
            elif ft == 21 and f.n_gqa >= 4:  # Q2_K_S
                new = T.Q4_K
            elif ft == 12:  # Q3_K_M
                new = T.Q5_K if self.i_attention_wv < 2 else T.Q4_K
            elif ft == 13:  # Q3_K_L  # noqa: SIM114 - llama.cpp's branches, one per file type
                new = T.Q5_K
            elif ft in (25, 30) and f.n_gqa >= 4:  # IQ4_NL, IQ4_XS
                new = T.Q5_K
            elif ft in (15, 17) and use_more_bits(self.i_attention_wv, self.n_attention_wv):  # Q4_K_M, Q5_K_M
                new = T.Q6_K
            elif ft == 14 and self.i_attention_wv < 4:  # Q4_K_S
                new = T.Q5_K
            if f.is_70b and new in (T.Q3_K, T.Q4_K):
                new = T.Q5_K
            if f.n_expert == 8:
                new = T.Q8_0
            self.i_attention_wv += 1
        elif cat == "attn_k":
            if f.n_expert == 8:
                new = T.Q8_0
        elif cat == "ffn_down":
            i, n = self._layer(name, self.i_ffn_down), f.n_layer
            falcon = f.arch == "falcon"
            if ft == 10:
                new = T.Q3_K
            elif ft == 21:
                if i < n // 8:
                    new = T.Q4_K
            elif ft == 12:
                new = T.Q5_K if i < n // 16 else T.Q4_K if not falcon or use_more_bits(i, n) else T.Q3_K
            elif ft == 13:
                new = T.Q4_K if falcon else T.Q5_K
            elif ft == 15:
                if falcon:
                    new = T.Q6_K if i < n // 16 else T.Q5_K if use_more_bits(i, n) else T.Q4_K
                elif use_more_bits(i, n):
                    new = T.Q6_K
            elif i < n // 8 and ft in (25, 30) and not self.has_imatrix:
                new = T.Q5_K
            elif ft == 17 and use_more_bits(i, n):
                new = T.Q6_K
            elif ft == 14 and not falcon and i < n // 8:
                new = T.Q5_K
            elif ft in (2, 8) and self.has_imatrix and i < n // 8:  # Q4_0, Q5_0: guard the first ffn_down
                new = T.Q4_1 if ft == 2 else T.Q5_1
            self.i_ffn_down += 1
        elif cat == "attn_output":
            if f.arch != "falcon":
                if f.n_expert == 8:
                    if ft in (10, 11, 12, 25, 14, 15, 30):
                        new = T.Q5_K
                else:
                    new = {10: T.Q3_K, 12: T.Q4_K, 13: T.Q5_K}.get(ft, new)
            elif ft == 13:
                new = T.Q4_K
        elif cat == "ffn_gate":
            self._layer(name, self.i_ffn_gate)
            self.i_ffn_gate += 1
        elif cat == "ffn_up":
            self._layer(name, self.i_ffn_up)
            self.i_ffn_up += 1
        return new

    def _fallback(self, name: str, new: GGMLType, ncols: int) -> GGMLType:
        """tensor_type_fallback: a type whose blocks fit the row, with llama.cpp's warning."""
        qk = block_size(new)
        if ncols % qk == 0:
            return new
        self.n_fallback += 1
        msg = (f"warning: {name:<36s} - ncols {ncols:6d} not divisible by {qk:3d} "
               f"(required for type {type_name(new):>7s}) ")
        if new in FALLBACK:
            out = FALLBACK[new]
        elif qk <= 32:
            out = new
        else:
            raise QuantizeError(f"no tensor type fallback is defined for type {type_name(new)}")
        if ncols % block_size(out):
            msg += "(WARNING: must use F16 due to unusual shape) "
            out = GGMLType.F16
        self.warn(msg + f"-> falling back to {type_name(out):>7s}")
        return out
