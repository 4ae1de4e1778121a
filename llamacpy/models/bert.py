"""bert: an encoder for embeddings (llama.cpp's build_bert). Word + token-type (sentence A) + absolute
position embeddings, LayerNorm; per layer non-causal attention with biases, residual, LayerNorm, GELU FFN,
residual, LayerNorm. No KV cache and no output head: `hidden_states` returns the last layer's output.

GELU is the exact erf form that BERT checkpoints are trained with (llama.cpp uses the tanh approximation
through an f16 table; the embeddings differ by about 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops.attention import attention_bidir
from ..ops.basic import gelu_erf, layer_norm
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

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> BertArgs:
        a = g.arch_get
        n_embd, n_head = int(a("embedding_length")), int(a("attention.head_count"))
        pooling = int(a("pooling_type", 0))
        if pooling not in POOLING_NAMES or pooling == 4:
            raise ModelError(f"{g.path}: pooling type {pooling} is not supported")
        return cls(arch=g.architecture, n_vocab=len(g.get("tokenizer.ggml.tokens", [])), n_embd=n_embd,
                   n_layer=int(a("block_count")), n_head=n_head, head_dim=n_embd // n_head,
                   n_ff=int(a("feed_forward_length")), norm_eps=float(a("attention.layer_norm_epsilon", 1e-12)),
                   n_ctx_train=int(a("context_length", 512)), pooling=POOLING_NAMES[pooling],
                   causal=bool(a("attention.causal", False)), file_type=int(g.get("general.file_type", 0)))


@dataclass
class BertLayer:
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    attn_norm: tuple[np.ndarray, np.ndarray]   # attn_output_norm (weight, bias)
    w_up: Linear
    w_down: Linear
    out_norm: tuple[np.ndarray, np.ndarray]    # layer_output_norm (weight, bias)


class Model:
    """An encoder: token ids of whole sequences in, one hidden vector per token out."""

    is_encoder = True

    def __init__(self, g: GGUFFile):
        self.g, self.args = g, BertArgs.from_gguf(g)
        if self.args.causal:
            raise ModelError(f"{g.path}: causal BERT models are not supported")
        w = Weights(g)
        self.tok_embd = w.matrix("token_embd.weight")
        self.args.n_vocab = self.args.n_vocab or self.tok_embd.n_out
        self.type_embd = w.optional_vector("token_types.weight")  # (n_types, n_embd)
        self.pos_embd = w.vector("position_embd.weight")  # (n_ctx_train, n_embd)
        self.embd_norm = self._norm(w, "token_embd_norm")
        self.layers = [self._layer(w, f"blk.{i}.") for i in range(self.args.n_layer)]
        self.scale = 1.0 / np.sqrt(self.args.head_dim)

    @staticmethod
    def _norm(w: Weights, name: str) -> tuple[np.ndarray, np.ndarray]:
        return w.vector(name + ".weight"), w.vector(name + ".bias")

    def _layer(self, w: Weights, p: str) -> BertLayer:
        return BertLayer(
            wq=w.linear(p + "attn_q.weight", p + "attn_q.bias"), wk=w.linear(p + "attn_k.weight", p + "attn_k.bias"),
            wv=w.linear(p + "attn_v.weight", p + "attn_v.bias"),
            wo=w.linear(p + "attn_output.weight", p + "attn_output.bias"),
            attn_norm=self._norm(w, p + "attn_output_norm"),
            w_up=w.linear(p + "ffn_up.weight", p + "ffn_up.bias"),
            w_down=w.linear(p + "ffn_down.weight", p + "ffn_down.bias"),
            out_norm=self._norm(w, p + "layer_output_norm"),
        )

    def embed(self, tokens: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Word + token type 0 + position embeddings, LayerNorm: (T, n_embd)."""
        a = self.args
        if max(lengths) > a.n_ctx_train:
            raise ValueError(f"a sequence of {max(lengths)} tokens is longer than the model's {a.n_ctx_train}")
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = self.tok_embd.get_rows(tokens)  # (T, n_embd)
        if self.type_embd is not None:
            x += self.type_embd[0]  # llama.cpp: every token is sentence A
        x += self.pos_embd[positions]
        return layer_norm(x, *self.embd_norm, a.norm_eps)

    def block(self, L: BertLayer, x: np.ndarray, lengths: list[int]) -> np.ndarray:
        a = self.args
        T = x.shape[0]
        xq = Activations(x)  # quantized once for q, k and v
        q = L.wq(xq).reshape(T, a.n_head, a.head_dim)
        k = L.wk(xq).reshape(T, a.n_head, a.head_dim)
        v = L.wv(xq).reshape(T, a.n_head, a.head_dim)
        attn = attention_bidir(q, k, v, lengths, self.scale)  # (T, n_embd)
        x = layer_norm(x + L.wo(attn), *L.attn_norm, a.norm_eps)  # (T, n_embd)
        ff = gelu_erf(L.w_up(x))  # (T, n_ff)
        return layer_norm(x + L.w_down(ff), *L.out_norm, a.norm_eps)

    def hidden_states(self, tokens: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Consecutive sequences of `lengths` tokens (each attends only to itself) -> (T, n_embd)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if not lengths or min(lengths) <= 0 or sum(lengths) != len(tokens):
            raise ValueError(f"sequence lengths {lengths} do not cover {len(tokens)} tokens")
        x = self.embed(tokens, lengths)
        for L in self.layers:
            x = self.block(L, x, lengths)
        return x
