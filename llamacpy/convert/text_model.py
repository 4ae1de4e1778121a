"""Hugging Face text models -> GGUF: what convert_hf_to_gguf.py's TextModel does for every family.

A family (llama.py, qwen.py, gemma.py, phi3.py, bert.py) subclasses `TextModel`: its GGUF architecture, its
vocabulary (`set_vocab`), the hyper-parameters it adds or overrides (`set_parameters`), and how its tensors
differ from the HF layout (`modify`, `extra_tensors`). Names go through gguf-py's TensorNameMap, llama.cpp's
own table.

Tensors are planned in a first pass (`modify` run on each stored tensor, a view of the memory map, to learn its
GGUF shape and type: so `modify` must choose shapes from shapes, not values) and streamed in a second, loaded
in float32: the header comes first in a GGUF file, so the sizes must be known before any data.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from . import vocab
from .common import FILE_TYPES, ConvertError, Planned, open_weights, tensor_type, write_gguf
from .safetensors import Safetensors

# one expert's matrix: model.layers.N.mlp.experts.X.gate_proj.weight, ...block_sparse_moe.experts.X.w1.weight
EXPERT = re.compile(r"^(?P<prefix>.*\.)experts\.(?P<x>\d+)\.(?P<kind>[^.]+)\.weight$")
# vision / audio towers of multimodal checkpoints: dropped, as TextModel.filter_tensors drops them
MULTIMODAL = ("vision_tower.", "multi_modal_projector.", "visual.", "vision_model.", "audio_tower.", "model.vision")


class TextModel:
    """One family of HF text models; an instance holds one checkpoint's folder, config and weights."""

    arch = ""  # gguf-py MODEL_ARCH name, e.g. "LLAMA"
    keep_f32 = ("ffn_gate_inp", "ffn_gate_inp_shexp")

    def __init__(self, folder: Path, config: dict, weights: Safetensors, outtype: str):
        import gguf

        self.folder, self.weights, self.ftype = folder, weights, FILE_TYPES[outtype]
        self.hparams = {**config, **(config.get("text_config") or {})}
        self.n_layer = int(self.find("n_layers", "num_hidden_layers", "n_layer", "num_layers"))
        self.names = gguf.TensorNameMap(gguf.MODEL_ARCH[self.arch], self.n_layer)
        self.rope = self._rope_parameters()

    # --- hyper-parameters -------------------------------------------------------------------------------------

    def find(self, *keys: str, optional: bool = False):
        for k in keys:
            if self.hparams.get(k) is not None:
                return self.hparams[k]
        if optional:
            return None
        raise ConvertError(f"{self.folder / 'config.json'}: none of {', '.join(keys)} is set")

    def _rope_parameters(self) -> dict:
        """TextModel.__init__: rope_parameters (or rope_scaling) with the global settings mirrored into it."""
        rope = dict(self.hparams.get("rope_parameters") or self.hparams.get("rope_scaling") or {})
        if "full_attention" not in rope and "sliding_attention" not in rope:
            local = self.find("local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
                              "rope_local_base_freq", optional=True)
            if local is not None:
                rope["sliding_attention"] = {"rope_theta": local}
            theta = self.find("global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta",
                              "rotary_emb_base", optional=True)
            if "rope_theta" not in rope and theta is not None:
                rope["rope_theta"] = theta
            if "rope_type" not in rope and rope.get("type") is not None:
                rope["rope_type"] = rope["type"]
            for key, names in (("partial_rotary_factor", ("partial_rotary_factor", "rope_pct", "rope_percent")),
                               ("original_max_position_embeddings", ("original_max_position_embeddings",))):
                value = self.find(*names, optional=True)
                if key not in rope and value is not None:
                    rope[key] = value
        return rope

    def set_parameters(self, gw) -> None:
        """TextModel.set_gguf_parameters (the parts a dense decoder uses)."""
        gw.add_block_count(self.n_layer)
        for add, keys in ((gw.add_context_length, ("max_position_embeddings", "n_ctx", "n_positions",
                                                   "max_length", "max_sequence_length", "model_max_length")),
                          (gw.add_embedding_length, ("hidden_size", "n_embd", "dim")),
                          (gw.add_feed_forward_length, ("intermediate_size", "n_inner", "hidden_dim")),
                          (gw.add_head_count, ("num_attention_heads", "n_head", "n_heads")),
                          (gw.add_head_count_kv, ("num_key_value_heads", "n_kv_heads"))):
            if (value := self.find(*keys, optional=True)) is not None:
                add(int(value))
        if self.hparams.get("is_causal") is False:
            gw.add_causal_attention(False)
        self._rope_scaling(gw)
        rope = self.rope.get("full_attention", self.rope)
        if (theta := rope.get("rope_theta")) is not None:
            gw.add_rope_freq_base(float(theta))
        if (local := self.rope.get("sliding_attention", {}).get("rope_theta")) is not None:
            gw.add_rope_freq_base_swa(float(local))
        if (eps := self.find("rms_norm_eps", "norm_eps", optional=True)) is not None:
            gw.add_layer_norm_rms_eps(float(eps))
        if (eps := self.find("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", optional=True)) is not None:
            gw.add_layer_norm_eps(float(eps))
        if (n := self.find("num_local_experts", "num_experts", "n_routed_experts", optional=True)) is not None:
            gw.add_expert_count(int(n))
        if (n := self.find("num_experts_per_tok", "num_experts_per_token", "top_k_experts", optional=True)) \
                is not None:
            gw.add_expert_used_count(int(n))
        if (head_dim := self.hparams.get("head_dim")) is not None:
            gw.add_key_length(int(head_dim))
            gw.add_value_length(int(head_dim))
        gw.add_file_type(self.ftype)

    def _rope_scaling(self, gw) -> None:
        import gguf

        rope = self.rope.get("full_attention", self.rope)
        kind, factor = (rope.get("rope_type") or "").lower(), rope.get("factor")
        if kind == "linear" and factor is not None:
            gw.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            gw.add_rope_scaling_factor(float(factor))
        elif kind == "yarn" and factor is not None:
            gw.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            gw.add_rope_scaling_factor(float(factor))
            gw.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
            for add, keys in ((gw.add_rope_scaling_yarn_ext_factor, ("extrapolation_factor",)),
                              (gw.add_rope_scaling_yarn_attn_factor, ("attention_factor", "attn_factor")),
                              (gw.add_rope_scaling_yarn_beta_fast, ("beta_fast",)),
                              (gw.add_rope_scaling_yarn_beta_slow, ("beta_slow",))):
                value = next((rope[k] for k in keys if rope.get(k) is not None), None)
                if value is not None:
                    add(float(value))
        elif kind in ("su", "longrope"):
            gw.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        elif kind not in ("", "default", "llama3", "dynamic"):
            raise ConvertError(f"{self.folder / 'config.json'}: RoPE scaling {kind!r} is not supported")

    def set_vocab(self, gw) -> None:
        vocab.gpt2(gw, self.folder, self.hparams.get("vocab_size"))

    # --- tensors ----------------------------------------------------------------------------------------------

    def skip(self, name: str) -> bool:
        """Tensors llama.cpp's converter drops (rotary caches, vision towers)."""
        return name.endswith((".rotary_emb.inv_freq", ".attn.masked_bias", ".attn.bias")) \
            or name.startswith(MULTIMODAL)

    def gguf_name(self, name: str) -> str:
        name = name.removeprefix("model.language_model.").removeprefix("language_model.")
        if not name.startswith(("model.", "lm_head")):
            name = "model." + name
        new = self.names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConvertError(f"cannot map tensor {name!r} to a llama.cpp name ({type(self).__name__})")
        return new

    def modify(self, name: str, data: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
        """HF tensor -> GGUF tensor(s); the default renames only."""
        yield self.gguf_name(name), data

    def extra_tensors(self) -> Iterable[tuple[str, np.ndarray]]:
        """Tensors made from the config (rope factors)."""
        return ()

    def extra_parameters(self, gw) -> None:
        """Keys llama.cpp's converter writes while it makes those tensors, so before the general.* keys."""

    def plan(self, outtype: str) -> Iterator[Planned]:
        """The made tensors first, then the checkpoint's (prepare_tensors' order); a layer's experts, one
        matrix each in HF, become one 3-D tensor per kind where the layer's last one is met."""
        for new, data in self.extra_tensors():
            yield new, data.shape, "f32", (lambda d=data: d)
        groups: dict[str, dict[tuple[int, str], str]] = {}
        for name in self.weights.names():
            if self.skip(name):
                continue
            if self.expert_kinds and (m := EXPERT.match(name)):
                yield from self._expert(groups, m["prefix"], int(m["x"]), m["kind"], name, outtype)
                continue
            # on the stored bits (a view of the map): only the shapes count here, so nothing is widened twice
            for new, data in self.modify(name, self.weights.stored(name)):
                yield new, data.shape, tensor_type(new, data.shape, outtype, self.keep_f32), self._loader(name, new)
        if groups:
            raise ConvertError(f"{self.folder}: experts missing from {', '.join(groups)} (expected "
                               f"{self.n_expert} of each of {', '.join(self.expert_kinds)})")

    expert_kinds: tuple[str, ...] = ()  # a mixture of experts' per-expert matrices, in the order llama.cpp emits

    @property
    def n_expert(self) -> int:
        return int(self.find("num_local_experts", "num_experts"))

    def _expert(self, groups: dict, prefix: str, x: int, kind: str, name: str, outtype: str) -> Iterator[Planned]:
        members = groups.setdefault(prefix, {})
        members[(x, kind)] = name
        if len(members) < self.n_expert * len(self.expert_kinds):
            return
        del groups[prefix]
        for k in self.expert_kinds:
            try:
                names = [members[(i, k)] for i in range(self.n_expert)]
            except KeyError:
                raise ConvertError(f"{prefix}experts: not {self.n_expert} experts of {k}") from None
            new = self.gguf_name(f"{prefix}experts.{k}.weight")
            shape = (self.n_expert, *self.weights.entries[names[0]].shape)
            yield new, shape, tensor_type(new, shape, outtype, self.keep_f32), \
                (lambda names=names: np.stack([self.weights.float32(n) for n in names]))

    def _loader(self, name: str, new: str) -> Callable[[], np.ndarray]:
        return lambda: dict(self.modify(name, self.weights.float32(name)))[new]


def llama3_rope_factors(theta: float, dim: int, rope: dict) -> np.ndarray:
    """LlamaModel.generate_extra_tensors: rope_freqs for `rope_type: llama3`."""
    freqs = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


FTYPE_NAMES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}  # as in llama.cpp's file names


def parameter_counts(plan: list[Planned]) -> tuple[int, int, int, int]:
    """(total, shared, per-expert, expert count), as gguf-py's get_total_parameter_count counts them for the
    size label (8x13M: experts counted once each, the rest shared)."""
    total = shared = expert = expert_sum = n_expert_tensors = 0
    for name, shape, _, _ in plan:
        size = int(np.prod(shape, dtype=np.int64))
        total += size
        if "_exps." in name and len(shape) >= 3:
            n = shape[-2 if ".bias" in name else -3]
            expert += size // n
            expert_sum += n
            n_expert_tensors += 1
        else:
            shared += size
    return total, shared, expert, expert_sum // n_expert_tensors if n_expert_tensors else 0


def guess_outtype(weights: Safetensors) -> str:
    """--outtype auto: the 16-bit type of the first matrix (BF16 stays BF16, anything else F16), as llama.cpp's
    converter guesses it (config.json's torch_dtype is not trusted: fine-tunes misstate it)."""
    for name in weights.names():
        e = weights.entries[name]
        if len(e.shape) >= 2:
            return "bf16" if e.dtype == "BF16" else "f16"
    return "f16"


def output_path(out: Path | None, folder: Path, meta, outtype: str, vocab_only: bool) -> Path:
    """--outfile: a file (its `{ftype}` filled in), or a folder (default: the model's) to hold a file named by
    gguf-py's naming convention (Name-Size-FTYPE.gguf), as llama.cpp's converter names it."""
    import gguf

    ftype = FTYPE_NAMES[outtype]
    if out is None or out.is_dir():
        name = (gguf.naming_convention(meta.name, meta.basename, meta.finetune, meta.version, None, None, "vocab")
                if vocab_only else
                gguf.naming_convention(meta.name, meta.basename, meta.finetune, meta.version, meta.size_label, ftype))
        return (out or folder) / f"{name}.gguf"
    return out.parent / gguf.fill_templated_filename(out.name, ftype)


def convert(cls: type[TextModel], folder: Path, config: dict, out: Path | None, outtype: str,
            progress: Callable[[str], None], model_name: str | None = None, metadata: Path | None = None,
            vocab_only: bool = False, dry_run: bool = False) -> Path:
    """ModelBase.write's order: the tensors planned, the general.* keys (gguf-py's Metadata: `metadata`
    override file, model card, config, folder name, size label), the hyper-parameters, the vocabulary, then
    the file (written whole or not at all). Returns the file's path (with `dry_run`, the one it would have)."""
    import gguf

    logging.getLogger("gguf").setLevel(logging.ERROR)  # a family's overrides re-set keys: not a warning here
    weights = open_weights(folder)
    if outtype == "auto":
        outtype = guess_outtype(weights)
        progress(f"convert: --outtype auto: {outtype} (the checkpoint's first matrix)")
    model = cls(folder, config, weights, outtype)
    progress(f"convert: {folder}: {cls.arch.lower()}, {model.n_layer} layers, {len(weights.entries)} tensors; "
             f"planning")
    gw = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[cls.arch]])
    model.extra_parameters(gw)
    plan = [] if vocab_only else list(model.plan(outtype))
    counts = parameter_counts(plan)
    n_params = counts[0]
    meta = gguf.Metadata.load(metadata, folder, model_name, n_params)
    meta.name = meta.name or folder.resolve().name
    if meta.size_label is None and n_params > 0:
        meta.size_label = gguf.size_label(*counts)
    gw.add_type(gguf.GGUFType.MODEL)
    meta.set_gguf_meta_model(gw)
    model.set_parameters(gw)
    gw.add_quantization_version(gguf.GGML_QUANT_VERSION)
    progress("convert: reading the vocabulary")
    model.set_vocab(gw)
    path = output_path(out, folder, meta, outtype, vocab_only)
    if dry_run:
        for name, shape, qtype, _ in plan:
            progress(f"convert: (dry run) {name:36s} {'x'.join(map(str, shape)):>14s} {qtype}")
        progress(f"convert: (dry run) would write {path}: {len(gw.kv_data[0])} keys, {len(plan)} tensors, "
                 f"{n_params / 1e6:.1f}M parameters")
        return path
    tmp = path.with_name(path.name + ".part")
    try:
        write_gguf(tmp, gw, plan, progress)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
