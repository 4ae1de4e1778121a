"""What every architecture shares: hyperparameters from GGUF, the KV cache, batches, the forward skeleton.

An architecture module defines `ModelArgs.from_gguf` specifics and a `block(layer, x, batch, cache)`;
the embedding, final norm and output projection are common.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

import numpy as np

from ..gguf import GGMLType, GGUFFile, Tensor
from ..kernels import WeightMatrix, dequantize
from ..ops import RopeTable, kv_quant, rms_norm
from ..ops.linear import Linear
from ..ops.lora import LoraRows, embd_delta
from ..ops.rope import Yarn


class ModelError(ValueError):
    """A model file that llamacpy cannot run (unknown architecture, missing tensor...)."""


@dataclass
class ModelArgs:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rms_eps: float
    rope_base: float
    n_rot: int
    n_ctx_train: int
    rope_neox: bool = False
    rope_scale: float = 1.0
    attn_scale: float = 0.0  # 0 = 1/sqrt(head_dim)
    swa_window: int = 0
    swa_layers: tuple[bool, ...] = ()
    rope_base_swa: float = 10000.0
    file_type: int = 0
    yarn: Yarn | None = None  # rope.scaling.type "yarn"
    rope_attn_factor: float = 1.0  # rope.scaling.attn_factor (cos and sin times it; YaRN folds it in its own)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_gguf(cls, g: GGUFFile, **overrides) -> ModelArgs:
        a = g.arch_get
        n_embd = int(a("embedding_length"))
        n_head = int(a("attention.head_count"))
        head_dim = int(a("attention.key_length", n_embd // n_head))
        n_vocab = int(a("vocab_size", len(g.get("tokenizer.ggml.tokens", [])) or g.tensors["token_embd.weight"].shape[0]))
        args = {
            "arch": g.architecture, "n_vocab": n_vocab, "n_embd": n_embd, "n_layer": int(a("block_count")),
            "n_head": n_head, "n_head_kv": int(a("attention.head_count_kv", n_head)), "head_dim": head_dim,
            "n_ff": int(a("feed_forward_length", a("expert_feed_forward_length", 0))),
            "rms_eps": float(a("attention.layer_norm_rms_epsilon", 1e-5)),
            "rope_base": float(a("rope.freq_base", 10000.0)), "n_rot": int(a("rope.dimension_count", head_dim)),
            "n_ctx_train": int(a("context_length", 4096)),
            "file_type": int(g.get("general.file_type", 0)),
        }
        args.update(_rope_scaling(g, args["n_ctx_train"]))
        args.update(overrides)
        return cls(**args)

    def rope_table(self, neox: bool | None = None, freq_factors: np.ndarray | None = None) -> RopeTable:
        """The rotary table of these hyper-parameters (positions up to n_ctx_train)."""
        return RopeTable(self.n_rot, self.rope_base, self.n_ctx_train, self.rope_neox if neox is None else neox,
                         self.rope_scale, freq_factors, self.yarn, self.rope_attn_factor)

    def is_swa(self, layer: int) -> bool:
        return bool(self.swa_layers) and self.swa_layers[layer]


ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _rope_scaling(g: GGUFFile, n_ctx_train: int) -> dict:
    """rope_scale (llama.cpp's freq_scale: 1 / rope.scaling.factor, 1 for type "none") and, for YaRN, its
    parameters as llama_context derives them (float32)."""
    a = g.arch_get
    kind = str(a("rope.scaling.type", "linear"))
    if kind not in ROPE_SCALING_TYPES:
        raise ModelError(f"{g.path}: rope scaling {kind!r} is not supported "
                         f"(supported: {', '.join(ROPE_SCALING_TYPES)})")
    factor = float(a("rope.scaling.factor", 0.0) or a("rope.scale_linear", 0.0) or 0.0)
    freq_scale = np.float32(1.0) if kind == "none" or factor == 0 else np.float32(1.0) / np.float32(factor)
    rope_attn_factor = float(a("rope.scaling.attn_factor", 1.0))
    out = {"rope_scale": float(freq_scale), "rope_attn_factor": rope_attn_factor}
    if kind == "yarn":
        attn = Yarn.attn_factor_of(float(np.float32(1.0) / freq_scale),
                                   float(a("rope.scaling.yarn_log_multiplier", 0.0)), rope_attn_factor)
        out["yarn"] = Yarn(int(a("rope.scaling.original_context_length", n_ctx_train) or n_ctx_train), attn)
    return out


@dataclass(frozen=True)
class Segment:
    """`n` consecutive tokens of sequence `seq` (a KV cache row) starting at position `pos0`."""

    seq: int
    pos0: int
    n: int


class KVCache:
    """Keys and values per layer, preallocated once: float16 (n_seq, n_head_kv, n_ctx, head_dim) by default
    (llama.cpp's F16 cache: same rounding, half the memory and bandwidth of f32), or GGML blocks u8 (n_seq,
    n_head_kv, n_ctx, row_bytes) for a quantized `type_k`/`type_v` (llama-server's -ctk/-ctv, ops/kv_quant.py).

    `lazy`: the arrays live in anonymous memory maps whose pages exist once written, and `release(seq)` gives a
    sequence's pages back (for a pool of sequences that together hold at most n_ctx tokens: memory follows the
    tokens held, not n_seq x n_ctx)."""

    def __init__(self, args: ModelArgs, n_ctx: int, n_seq: int = 1, lazy: bool = False,
                 type_k: GGMLType = GGMLType.F16, type_v: GGMLType = GGMLType.F16):
        self.n_ctx, self.n_seq, self.head_dim = n_ctx, n_seq, args.head_dim
        self.type_k, self.type_v = GGMLType(type_k), GGMLType(type_v)
        # llama.cpp turns K and V by a Walsh-Hadamard rotation before quantizing them (ops/kv_quant.py)
        self.rot_k = kv_quant.rotation(self.type_k, self.head_dim, keys=True)
        self.rot_v = kv_quant.rotation(self.type_v, self.head_dim, keys=False)
        self._maps: list[mmap.mmap] = []
        self.k = [self._array(n_seq, args.n_head_kv, self.type_k, lazy) for _ in range(args.n_layer)]
        self.v = [self._array(n_seq, args.n_head_kv, self.type_v, lazy) for _ in range(args.n_layer)]

    def _array(self, n_seq: int, n_head_kv: int, qtype: GGMLType, lazy: bool) -> np.ndarray:
        if qtype == GGMLType.F16:
            dtype, shape = np.dtype(np.float16), (n_seq, n_head_kv, self.n_ctx, self.head_dim)
        else:
            dtype, shape = np.dtype(np.uint8), (n_seq, n_head_kv, self.n_ctx, kv_quant.row_bytes(qtype, self.head_dim))
        if not lazy:
            return np.zeros(shape, dtype)
        m = mmap.mmap(-1, max(1, int(np.prod(shape)) * dtype.itemsize))  # anonymous: zero pages until written
        self._maps.append(m)
        return np.frombuffer(m, dtype).reshape(shape)

    def release(self, seq: int) -> None:
        """Give the pages of sequence `seq` back to the system (they read as zeros again); lazy caches only."""
        for m in self._maps:
            per_seq = len(m) // self.n_seq
            start = seq * per_seq
            first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the sequence's bytes
            end = (start + per_seq) // mmap.PAGESIZE * mmap.PAGESIZE
            if end > first:
                m.madvise(mmap.MADV_DONTNEED, first, end - first)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)

    def _typed(self, rows: np.ndarray, qtype: GGMLType, rot: int):
        return rows if qtype == GGMLType.F16 else kv_quant.QuantKV(rows, qtype, self.head_dim, rot)

    def store(self, layer: int, seg: Segment, k: np.ndarray, v: np.ndarray) -> tuple:
        """Write k, v (n, n_head_kv, hd) at the segment's positions; return views of positions [0, end) (f16
        arrays, or kv_quant.QuantKV rows of a quantized cache)."""
        end = seg.pos0 + seg.n
        if end > self.n_ctx:
            raise ValueError(f"context full: position {end} > n_ctx {self.n_ctx}")
        kc, vc = self.k[layer][seg.seq], self.v[layer][seg.seq]
        if self.rot_k:
            k = kv_quant.hadamard(k, self.rot_k)
        if self.rot_v:
            v = kv_quant.hadamard(v, self.rot_v)
        kc[:, seg.pos0:end] = self.encode(k.transpose(1, 0, 2), self.type_k)
        vc[:, seg.pos0:end] = self.encode(v.transpose(1, 0, 2), self.type_v)
        return self._typed(kc[:, :end], self.type_k, self.rot_k), self._typed(vc[:, :end], self.type_v, self.rot_v)

    @staticmethod
    def encode(x: np.ndarray, qtype: GGMLType) -> np.ndarray:
        """f32 rows (..., head_dim) as the cache holds them (numpy rounds to nearest even, as ggml's f32 -> f16)."""
        return x.astype(np.float16) if qtype == GGMLType.F16 else kv_quant.to_blocks(x, qtype)

    def decode(self, rows: np.ndarray, qtype: GGMLType) -> np.ndarray:
        """Cache rows (..., row) back to f32 (..., head_dim)."""
        if qtype == GGMLType.F16:
            return rows.astype(np.float32)
        flat = kv_quant.to_f32(rows.reshape(-1, rows.shape[-1]), qtype, self.head_dim)
        return flat.reshape(*rows.shape[:-1], self.head_dim)


class Weights:
    """Typed access to a GGUF file's tensors: matrices stay quantized, vectors become float32."""

    def __init__(self, g: GGUFFile):
        self.g = g

    def has(self, name: str) -> bool:
        return name in self.g.tensors

    def tensor(self, name: str) -> Tensor:
        try:
            return self.g.tensors[name]
        except KeyError:
            raise ModelError(f"{self.g.path}: tensor {name!r} is missing") from None

    def matrix(self, name: str) -> WeightMatrix:
        return WeightMatrix(self.tensor(name))

    def linear(self, name: str, bias: str | None = None) -> Linear:
        """A projection `name` (with the optional bias vector `bias`, when the file has it)."""
        return Linear(self.matrix(name), self.optional_vector(bias) if bias else None)

    def vector(self, name: str) -> np.ndarray:
        t = self.tensor(name)
        if t.type == GGMLType.F32:
            return t.data.view(np.float32).reshape(t.shape)
        return dequantize(t).reshape(t.shape)

    def optional_vector(self, name: str) -> np.ndarray | None:
        return self.vector(name) if self.has(name) else None


class DecoderModel:
    """Token embedding -> blocks -> final RMS norm -> output projection. Subclasses define `block`."""

    def __init__(self, g: GGUFFile, args: ModelArgs):
        self.g, self.args = g, args
        w = Weights(g)
        self.w = w
        self.tok_embd = w.matrix("token_embd.weight")
        self.output_norm = w.vector("output_norm.weight")
        self.output = Linear(w.matrix("output.weight")) if w.has("output.weight") else Linear(self.tok_embd)
        self.embed_scale = 1.0
        self.lora_active = False  # LoRA adapters applied (models/lora.py): the fused steps do not take them
        self.embd_lora: tuple = ()  # the token embeddings' adapters (LoraWeight, scale)
        self.lora_rows = LoraRows()  # per row, its sequence's rows in the call (the adapters' float order)
        self.logit_scale = 1.0  # the logits are multiplied by this (granite divides by its logit_scale)
        self.layers = [self.load_layer(w, i) for i in range(args.n_layer)]

    def load_layer(self, w: Weights, i: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, segments: list[Segment],
              cache: KVCache, trace: dict | None = None) -> np.ndarray:  # pragma: no cover - abstract
        """One layer. With `trace`, intermediates are stored under llama.cpp's graph names
        (attn_norm-i, Qcur-i, Kcur-i, Vcur-i, kqv_out-i, l_out-i ...) to compare with its eval callback."""
        raise NotImplementedError

    def rope_of(self, layer: int, cache: KVCache) -> RopeTable | None:  # pragma: no cover - abstract
        """The rotary table of `layer`'s keys in `cache` (for shifting them there); None: that layer has no
        RoPE. (The cache matters to phi3's LongRoPE, whose factors follow the context size.)"""
        raise NotImplementedError

    def move_cells(self, cache: KVCache, seq: int, src: int, dst: int, n: int) -> None:
        """Move the n cells [src, src + n) of row `seq` to [dst, dst + n), keys re-rotated by dst - src positions
        (llama.cpp's seq_add with its K shift: rope on the f16 cache, rounded back to f16). For a context shift
        and for reusing cached chunks of a prompt at new positions (--cache-reuse)."""
        if n <= 0 or src == dst or min(src, dst) < 0 or max(src, dst) + n > cache.n_ctx:
            raise ValueError(f"cannot move {n} cells from {src} to {dst} in a context of {cache.n_ctx}")
        for i in range(self.args.n_layer):
            k, v = cache.k[i][seq], cache.v[i][seq]  # (n_head_kv, n_ctx, head_dim or row bytes)
            rope = self.rope_of(i, cache)
            if rope is None:
                k[:, dst:dst + n] = k[:, src:src + n].copy()
            else:  # to f32, turned back, rotated, turned again, quantized back (llama.cpp's build_rope_shift)
                keys = cache.decode(k[:, src:src + n], cache.type_k)
                keys = rope.shift(kv_quant.hadamard(keys, cache.rot_k) if cache.rot_k else keys, dst - src)
                k[:, dst:dst + n] = cache.encode(kv_quant.hadamard(keys, cache.rot_k) if cache.rot_k else keys,
                                                 cache.type_k)
            v[:, dst:dst + n] = v[:, src:src + n].copy()

    def new_cache(self, n_ctx: int, n_seq: int = 1, lazy: bool = False, type_k: GGMLType = GGMLType.F16,
                  type_v: GGMLType = GGMLType.F16) -> KVCache:
        return KVCache(self.args, n_ctx, n_seq, lazy, type_k, type_v)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        x = self.tok_embd.get_rows(tokens)  # (T, n_embd)
        if self.embd_lora:
            for w, scale in self.embd_lora:
                x += embd_delta(np.asarray(tokens, dtype=np.int64), w, scale)
        if self.embed_scale != 1.0:
            x *= np.float32(self.embed_scale)
        return x

    def hidden_states(self, tokens: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Embeddings of a decoder (llama-server --embeddings): consecutive sequences of `lengths` tokens, each
        from position 0 in a cache of its own, -> their hidden states after the final norm (T, n_embd)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if not lengths or min(lengths) <= 0 or sum(lengths) != len(tokens):
            raise ValueError(f"sequence lengths {lengths} do not cover {len(tokens)} tokens")
        cache = self.new_cache(max(lengths), len(lengths))
        segments = [Segment(i, 0, n) for i, n in enumerate(lengths)]
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = self.embed(tokens)  # (T, n_embd)
        for i in range(self.args.n_layer):
            x = self.block(i, x, positions, segments, cache)
        return rms_norm(x, self.output_norm, self.args.rms_eps)  # (T, n_embd)

    def forward(self, tokens: np.ndarray, segments: list[Segment], cache: KVCache,
                output_rows: np.ndarray | None = None, trace: dict | None = None,
                row_exact: bool = False) -> np.ndarray:
        """Run the tokens of `segments` (concatenated in order) through the model, filling the cache.

        Returns logits (R, n_vocab) for `output_rows` (indices into tokens; default: the last token of
        each segment). `trace`, when given, collects intermediates (see `block`). `row_exact` asks for
        each row's one-row-step bits (llama.Model honours it; this layer-by-layer path does not promise it, but
        for LoRA adapters' products).
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        positions = np.concatenate([np.arange(s.pos0, s.pos0 + s.n) for s in segments])
        if output_rows is None:
            output_rows = np.cumsum([s.n for s in segments]) - 1
        x = self.embed(tokens)  # (T, n_embd)
        if self.lora_active:  # each row as its sequence alone would have it (ops/lora.py)
            sizes = np.array([s.n for s in segments])
            self.lora_rows.counts = np.ones(len(tokens), np.int64) if row_exact else np.repeat(sizes, sizes)
        for i in range(self.args.n_layer):
            x = self.block(i, x, positions, segments, cache, trace)
        x = rms_norm(x[output_rows], self.output_norm, self.args.rms_eps)  # (R, n_embd)
        if self.lora_active:
            seg_of = np.searchsorted(np.cumsum([s.n for s in segments]), output_rows, side="right")
            per_seg = np.bincount(seg_of, minlength=len(segments))
            self.lora_rows.counts = np.ones(len(output_rows), np.int64) if row_exact else per_seg[seg_of]
        return self.logits(x)  # (R, n_vocab)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The output projection of final-normed hidden states (R, n_embd) -> (R, n_vocab)."""
        out = self.output(x)
        if self.logit_scale != 1.0:
            out *= np.float32(self.logit_scale)
        return out
