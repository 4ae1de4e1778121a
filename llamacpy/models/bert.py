"""bert: an encoder for embeddings (llama.cpp's llama_model_bert graph, shared by nomic-bert and jina-bert-v2).
Word + token-type (sentence A) + absolute position embeddings, LayerNorm; per layer non-causal attention with
biases, residual, LayerNorm, GELU FFN, residual, LayerNorm. No KV cache: `hidden_states` returns the last
layer's output. The variants (subclasses) change three things: `positions` (absolute embeddings, RoPE or none),
`ffn` ("gelu", "swiglu", "geglu") and the attention bias (ALiBi).

Numerics are llama.cpp's, not the checkpoints' float32 forward: GELU is ggml's tanh approximation through its
f16 table (BERT trained with the erf form) and attention runs as ggml's flash attention over K and V cast to
f16 (ops/attention.py attention_bidir); on all-MiniLM-L6-v2 either moves the embeddings by about 1e-4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops import RopeTable, geglu, gelu_tanh, swiglu
from ..ops.attention import alibi_slopes, attention_bidir
from ..ops.basic import layer_norm
from ..ops.linear import Linear
from ..ops.pooling import POOLING_NAMES
from .base import ModelError, Weights


@dataclass
class BertArgs:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    head_dim: int
    n_ff: int
    norm_eps: float
    n_ctx_train: int
    pooling: str        # the file's bert.pooling_type: "mean", "cls", "last" or "none"
    causal: bool
    file_type: int = 0
    rope_base: float = 10000.0

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> BertArgs:
        a = g.arch_get
        n_embd, n_head = int(a("embedding_length")), int(a("attention.head_count"))
        pooling = int(a("pooling_type", 0))
        if pooling not in POOLING_NAMES:
            raise ModelError(f"{g.path}: pooling type {pooling} is not supported")
        return cls(arch=g.architecture, n_vocab=len(g.get("tokenizer.ggml.tokens", [])), n_embd=n_embd,
                   n_layer=int(a("block_count")), n_head=n_head, head_dim=n_embd // n_head,
                   n_ff=int(a("feed_forward_length")), norm_eps=float(a("attention.layer_norm_epsilon", 1e-12)),
                   n_ctx_train=int(a("context_length", 512)), pooling=POOLING_NAMES[pooling],
                   causal=bool(a("attention.causal", False)), file_type=int(g.get("general.file_type", 0)),
                   rope_base=float(a("rope.freq_base", 10000.0)))


@dataclass
class BertLayer:
    wqkv: Linear | None  # q, k, v in one matrix (nomic-bert files), else the three below
    wq: Linear | None
    wk: Linear | None
    wv: Linear | None
    wo: Linear
    attn_norm: tuple[np.ndarray, np.ndarray]   # attn_output_norm (weight, bias)
    w_up: Linear
    w_gate: Linear | None
    w_down: Linear
    out_norm: tuple[np.ndarray, np.ndarray]    # layer_output_norm (weight, bias)


class Model:
    """An encoder: token ids of whole sequences in, one hidden vector per token out."""

    is_encoder = True
    positions = "absolute"  # position_embd rows added to the input; "rope": NEOX RoPE on q and k
    ffn = "gelu"  # gelu(up x + b); "swiglu": silu(gate x) * up x; "geglu": gelu(first half) * second half of up x
    max_alibi_bias = 0.0  # > 0: ALiBi attention biases instead of positions (jina-bert-v2: 8)

    def __init__(self, g: GGUFFile):
        self.g, self.args = g, BertArgs.from_gguf(g)
        if self.args.causal:
            raise ModelError(f"{g.path}: causal BERT models are not supported")
        w = Weights(g)
        self.tok_embd = w.matrix("token_embd.weight")
        self.args.n_vocab = self.args.n_vocab or self.tok_embd.n_out
        self.type_embd = w.optional_vector("token_types.weight")  # (n_types, n_embd)
        if self.positions == "absolute":
            self.pos_embd = w.vector("position_embd.weight")  # (n_ctx_train, n_embd)
        a = self.args
        self.rope = RopeTable(a.head_dim, a.rope_base, a.n_ctx_train, True) if self.positions == "rope" else None
        self.embd_norm = self._norm(w, "token_embd_norm")
        self.layers = [self._layer(w, f"blk.{i}.") for i in range(self.args.n_layer)]
        self.scale = 1.0 / np.sqrt(self.args.head_dim)
        self.slopes = alibi_slopes(a.n_head, self.max_alibi_bias) if self.max_alibi_bias > 0 else None
        # a reranker's classification head (llama.cpp's rank pooling): tanh(cls x + b), then cls.output
        self.cls = w.linear("cls.weight", "cls.bias") if w.has("cls.weight") else None
        self.cls_out = w.linear("cls.output.weight", "cls.output.bias") if w.has("cls.output.weight") else None
        self.has_classifier = self.cls is not None or self.cls_out is not None
        if a.pooling == "rank" and not self.has_classifier:
            raise ModelError(f"{g.path}: rank pooling without a classification head (cls.weight, cls.output.weight)")

    @staticmethod
    def _norm(w: Weights, name: str) -> tuple[np.ndarray, np.ndarray]:
        return w.vector(name + ".weight"), w.vector(name + ".bias")

    def _layer(self, w: Weights, p: str) -> BertLayer:
        fused = w.has(p + "attn_qkv.weight")
        qkv = [None if fused else w.linear(p + f"attn_{m}.weight", p + f"attn_{m}.bias") for m in "qkv"]
        return BertLayer(
            wqkv=w.linear(p + "attn_qkv.weight", p + "attn_qkv.bias") if fused else None,
            wq=qkv[0], wk=qkv[1], wv=qkv[2],
            wo=w.linear(p + "attn_output.weight", p + "attn_output.bias"),
            attn_norm=self._norm(w, p + "attn_output_norm"),
            w_up=w.linear(p + "ffn_up.weight", p + "ffn_up.bias"),
            w_gate=w.linear(p + "ffn_gate.weight") if w.has(p + "ffn_gate.weight") else None,
            w_down=w.linear(p + "ffn_down.weight", p + "ffn_down.bias"),
            out_norm=self._norm(w, p + "layer_output_norm"),
        )

    def embed(self, tokens: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Word + token type 0 + position embeddings, LayerNorm: (T, n_embd)."""
        a = self.args
        if max(lengths) > a.n_ctx_train:
            raise ValueError(f"a sequence of {max(lengths)} tokens is longer than the model's {a.n_ctx_train}")
        x = self.tok_embd.get_rows(tokens)  # (T, n_embd)
        if self.type_embd is not None:
            x += self.type_embd[0]  # llama.cpp: every token is sentence A
        if self.positions == "absolute":
            x += self.pos_embd[np.concatenate([np.arange(n) for n in lengths])]
        return layer_norm(x, *self.embd_norm, a.norm_eps)

    def block(self, L: BertLayer, x: np.ndarray, lengths: list[int]) -> np.ndarray:
        a = self.args
        T = x.shape[0]
        xq = Activations(x)  # quantized once for q, k and v
        if L.wqkv is not None:
            q, k, v = np.split(L.wqkv(xq), 3, axis=1)
        else:
            q, k, v = L.wq(xq), L.wk(xq), L.wv(xq)
        q, k, v = (m.reshape(T, a.n_head, a.head_dim) for m in (q, k, v))
        if self.rope is not None:
            positions = np.concatenate([np.arange(n) for n in lengths])
            q, k = self.rope.apply(q, positions), self.rope.apply(k, positions)
        attn = attention_bidir(q, k, v, lengths, self.scale, self.slopes)  # (T, n_embd)
        x = layer_norm(x + L.wo(attn), *L.attn_norm, a.norm_eps)  # (T, n_embd)
        xq = Activations(x)
        if self.ffn == "swiglu":
            ff = swiglu(L.w_gate(xq), L.w_up(xq))  # (T, n_ff)
        elif self.ffn == "geglu" and L.w_gate is not None:
            ff = geglu(L.w_gate(xq), L.w_up(xq))
        elif self.ffn == "geglu":
            up = L.w_up(xq)  # (T, 2 n_ff): the gate first
            ff = geglu(np.ascontiguousarray(up[:, :a.n_ff]), np.ascontiguousarray(up[:, a.n_ff:]))
        else:
            ff = gelu_tanh(L.w_up(xq))
        return layer_norm(x + L.w_down(ff), *L.out_norm, a.norm_eps)

    def classify(self, hidden: np.ndarray, lengths: list[int]) -> np.ndarray:
        """The classification head on each sequence's first (CLS) token: (n_seq, n_labels) scores."""
        if not self.has_classifier:
            raise ModelError(f"{self.g.path}: no classification head (cls.weight, cls.output.weight)")
        x = hidden[np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)]  # (n_seq, n_embd)
        if self.cls is not None:
            x = np.tanh(self.cls(x))
        return self.cls_out(x) if self.cls_out is not None else x

    def hidden_states(self, tokens: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Consecutive sequences of `lengths` tokens (each attends only to itself) -> (T, n_embd)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if not lengths or min(lengths) <= 0 or sum(lengths) != len(tokens):
            raise ValueError(f"sequence lengths {lengths} do not cover {len(tokens)} tokens")
        x = self.embed(tokens, lengths)
        for L in self.layers:
            x = self.block(L, x, lengths)
        return x
