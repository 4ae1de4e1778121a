"""Which type each tensor gets: llama.cpp's rules (src/llama-quant.cpp), for the file types llamacpy writes.

- Only weights are quantized: 2-D (or 3-D expert) tensors whose name ends in "weight", not norms, not
  output.weight with --leave-output-tensor, not BERT's position/token-type embeddings (and llama.cpp's
  other exceptions by name). Everything else keeps its type.
- output.weight, and token_embd.weight when the model has no output.weight (tied embeddings), become Q6_K
  for every quantized file type but Q8_0 (Q8_0 when a row is not a whole number of blocks, or for falcon),
  unless --output-tensor-type says otherwise; --token-embedding-type sets token_embd.weight.
- A row that is not a whole number of the chosen type's blocks falls back (Q6_K -> Q8_0, Q4_K -> Q5_0,
  Q5_K -> Q5_1, Q2_K/Q3_K -> Q4_0; a 32-block type that still does not fit -> F16), with llama.cpp's warning.

The per-layer mixtures of the K-quant and IQ file types (Q4_K_M's Q6_K attn_v ...) are not ported: llamacpy
does not write those file types.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

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
    """tensor_get_category, the parts the supported file types use: output, token_embd or other."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    return "other"


class TypeChooser:
    """llama_tensor_get_type for one file: call `choose(name, type, ne)` for each tensor in order."""

    def __init__(self, p: QuantizeParams, default: GGMLType, arch: str, names: list[str],
                 warn: Callable[[str], None]):
        self.p, self.default, self.arch, self.warn = p, default, arch, warn
        self.tied = "output.weight" not in names  # token_embd doubles as the output
        self.patterns = [(re.compile(pat), t) for pat, t in p.tensor_types]
        self.n_fallback = 0

    def choose(self, name: str, current: GGMLType, ne: tuple[int, ...]) -> GGMLType:
        p, cat = self.p, category(name)
        if not allows_quantization(p, name, ne):
            return current
        if p.token_embedding_type is not None and cat == "token_embd":
            return p.token_embedding_type
        if p.output_tensor_type is not None and cat == "output":
            return p.output_tensor_type
        new = self.default
        if not is_quantized(new):
            return new
        manual = next((t for pat, t in self.patterns if pat.search(name)), None)
        if manual is not None:
            new = manual
        elif not p.pure:
            new = self._mixture(new, ne, cat)
        return self._fallback(name, new, ne[0])

    def _mixture(self, new: GGMLType, ne: tuple[int, ...], cat: str) -> GGMLType:
        """llama_tensor_get_type_impl for the non-K file types: only the output (or tied embedding) changes."""
        if cat == "output" or (self.tied and cat == "token_embd"):
            if self.p.output_tensor_type is not None:
                return self.p.output_tensor_type
            if self.arch == "falcon" or ne[0] % block_size(new):
                return GGMLType.Q8_0
            if new != GGMLType.Q8_0:
                return GGMLType.Q6_K
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
