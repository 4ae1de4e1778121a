"""LoRA adapters in GGUF (llama.cpp's `--lora`, `convert_lora_to_gguf.py`), applied as llama.cpp applies them.

A file holds general.type = "adapter", adapter.type = "lora", general.architecture (the model's), adapter.lora.alpha,
and for each adapted weight `<name>.lora_a` (rank x n_in) and `<name>.lora_b` (n_out x rank). llama.cpp's
build_lora_mm adds to a projection W x the product B (A x) times scale = adapter_scale * alpha / rank (alpha 0:
adapter_scale), before any bias; for the token embeddings (A and B flipped: A n_vocab x rank, B n_embd x rank) the
rows of A picked by the tokens, times B^T (llm_build_inp_embd). The arithmetic, in ggml's float order for F16
adapters: ops/lora.py.

Adapters are loaded once; which apply, at what scale, is set per forward (`apply`), so requests with different
adapters (llama-server's per-request `lora`) share the model. Expert tensors (MoE) are not adapted yet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..gguf import GGMLType, GGUFFile
from ..kernels import dequantize
from ..ops.linear import Linear
from ..ops.lora import LoraWeight
from .base import DecoderModel, ModelError

TOKEN_EMBD = "token_embd.weight"


@dataclass
class LoraAdapter:
    path: str
    alpha: float
    weights: dict[str, LoraWeight]
    task_name: str = ""
    prompt_prefix: str = ""
    nbytes: int = field(default=0)

    def scale(self, name: str, adapter_scale: float) -> np.float32:
        """llama_adapter_lora_weight::get_scale."""
        rank = np.float32(self.weights[name].rank)
        s = np.float32(adapter_scale)
        return s * np.float32(self.alpha) / rank if self.alpha else s


def load_adapter(path: str | os.PathLike, model: DecoderModel) -> LoraAdapter:
    """Read and check an adapter for `model` (ModelError naming what is wrong, as llama.cpp refuses it)."""
    path = str(path)
    try:
        g = GGUFFile(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"failed to load LoRA adapter {path}: {e}") from None
    if g.get("general.type") != "adapter":
        raise ModelError(f"{path}: expect general.type to be 'adapter', but got: {g.get('general.type', '')}")
    if g.architecture != model.args.arch:
        raise ModelError(f"{path}: model arch and LoRA arch mismatch ({model.args.arch} vs {g.architecture})")
    if g.get("adapter.type") != "lora":
        raise ModelError(f"{path}: expect adapter.type to be 'lora', but got: {g.get('adapter.type', '')}")
    pairs: dict[str, dict[str, object]] = {}
    for name, t in g.tensors.items():
        for suffix in (".lora_a", ".lora_b"):
            if name.endswith(suffix):
                pairs.setdefault(name[: -len(suffix)], {})[suffix[-1]] = t
                break
        else:
            raise ModelError(f"{path}: LoRA tensor '{name}' has unexpected suffix")
    weights = {}
    for name, ab in pairs.items():
        if "a" not in ab or "b" not in ab:
            raise ModelError(f"{path}: LoRA tensor pair for '{name}' is missing one component")
        if name not in model.g.tensors:
            raise ModelError(f"{path}: LoRA tensor '{name}' does not exist in base model (hint: maybe wrong base "
                             "model?)")
        ta, tb = ab["a"], ab["b"]
        n_out, n_in = model.g.tensors[name].shape[-2:]
        (ra, ca), (rb, cb) = ta.shape, tb.shape
        if name == TOKEN_EMBD:
            ok = (n_in, n_out) == (rb, ra) and ca == cb
        else:
            ok = ca == n_in and rb == n_out
            if ok and ra != cb:
                raise ModelError(f"{path}: lora_a tensor is not transposed")
        if not ok:
            raise ModelError(f"{path}: tensor '{name}' has incorrect shape (hint: maybe wrong base model?)")
        a, b = (np.ascontiguousarray(dequantize(t).reshape(t.shape)) for t in (ta, tb))
        a16, b16 = (np.ascontiguousarray(t.data).view(np.uint16).reshape(t.shape) if t.type == GGMLType.F16
                    else None for t in (ta, tb))
        weights[name] = LoraWeight(a, b, a16, b16)
    linears = {lin.w.name for lin in model_linears(model)}
    missing = [n for n in weights if n != TOKEN_EMBD and n not in linears]
    if missing:
        raise ModelError(f"{path}: adapting {missing[0]} is not supported by llamacpy yet (expert and router "
                         "tensors)")
    return LoraAdapter(path, float(g.get("adapter.lora.alpha", 0.0)), weights, g.get("adapter.lora.task_name", ""),
                       g.get("adapter.lora.prompt_prefix", ""),
                       sum(w.a.nbytes + w.b.nbytes for w in weights.values()))


def model_linears(model: DecoderModel) -> list[Linear]:
    """Every projection of the model (its Linears, in the layers and in what they hold), once each."""
    found, seen = [], set()

    def walk(obj, depth: int) -> None:
        if id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        if isinstance(obj, Linear):
            found.append(obj)
            return
        values = obj if isinstance(obj, (list, tuple)) else getattr(obj, "__dict__", {}).values()
        for v in values:
            if isinstance(v, (Linear, list, tuple)) or type(v).__module__.startswith("llamacpy."):
                walk(v, depth + 1)

    walk(model, 0)
    return found


def apply(model: DecoderModel, adapters: list[LoraAdapter], scales: tuple[float, ...]) -> None:
    """Make the model's projections add adapter i at scales[i] (0: not applied), as llama_set_adapters_lora."""
    by_name: dict[str, list] = {}
    for ad, s in zip(adapters, scales):
        if s == 0:
            continue
        for name, w in ad.weights.items():
            by_name.setdefault(name, []).append((w, ad.scale(name, s)))
    for lin in model_linears(model):
        lin.lora = tuple(by_name.get(lin.w.name, ())) if lin.w.name != TOKEN_EMBD else ()
        lin.lora_rows = model.lora_rows
    model.embd_lora = tuple(by_name.get(TOKEN_EMBD, ()))
    model.lora_active = bool(by_name)


@dataclass
class LoraSet:
    """The adapters a server loaded (-lora, --lora-scaled) and the scales requests get unless they ask for their
    own (set by POST /lora-adapters); `applied`: the scales the model's projections use now."""

    model: DecoderModel
    adapters: list[LoraAdapter]
    scales: tuple[float, ...]
    applied: tuple[float, ...] = ()

    def use(self, scales: tuple[float, ...]) -> None:
        """Apply `scales` for the next forward (nothing to do when they are the ones applied)."""
        if scales != self.applied:
            apply(self.model, self.adapters, scales)
            self.applied = scales

    def request_scales(self, entries: list[tuple[int, float]]) -> tuple[float, ...]:
        """llama-server's construct_lora_list: the listed adapters at their scale, the others at 0."""
        scales = [0.0] * len(self.adapters)
        for i, scale in entries:
            if 0 <= i < len(scales):
                scales[i] = float(scale)
        return tuple(scales)
