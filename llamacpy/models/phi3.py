"""phi3 (Phi-3, Phi-4-mini): the llama block with one fused q/k/v matrix (attn_qkv, rows q then k then v) and one
fused gate/up matrix (ffn_up, the gate's rows first: ggml_swiglu of the product), NEOX RoPE, Q scaled by
1/sqrt(head_dim) before attention (as llama.cpp: the f16 rounding of Q sees the scaled values). LongRoPE
(Phi-3-*-128k): rope_factors_long/short chosen by the context size, rope.scaling.attn_factor on the rotation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops import RopeTable, attention, rms_norm, swiglu
from ..ops.linear import Linear
from .base import DecoderModel, KVCache, ModelArgs, Segment, Weights


@dataclass
class Phi3Layer:
    attn_norm: np.ndarray
    wqkv: Linear
    wo: Linear
    ffn_norm: np.ndarray
    w_gate_up: Linear  # (2 * n_ff, n_embd)
    w_down: Linear


class Model(DecoderModel):
    def __init__(self, g: GGUFFile, args: ModelArgs | None = None):
        args = args or ModelArgs.from_gguf(g, rope_neox=True)
        super().__init__(g, args)
        self.rope = args.rope_table(neox=True)
        # LongRoPE (the 128k-context models): per-pair factors, the long ones for a context past the original
        # one (llama_model::get_rope_factors by the cache's size), with rope.scaling.attn_factor on cos and sin
        self.rope_long = self.rope_short = None
        if self.w.has("rope_factors_long.weight"):
            self.rope_long = args.rope_table(True, self.w.vector("rope_factors_long.weight"))
            self.rope_short = args.rope_table(True, self.w.vector("rope_factors_short.weight"))
            self.n_ctx_orig = int(g.arch_get("rope.scaling.original_context_length", args.n_ctx_train))
        self.q_scale = np.float32(1.0) / np.sqrt(np.float32(args.head_dim))

    def rope_of(self, layer: int, cache: KVCache) -> RopeTable:
        if self.rope_long is None:
            return self.rope
        return self.rope_long if cache.n_ctx > self.n_ctx_orig else self.rope_short

    def load_layer(self, w: Weights, i: int) -> Phi3Layer:
        p = f"blk.{i}."
        return Phi3Layer(
            attn_norm=w.vector(p + "attn_norm.weight"), wqkv=w.linear(p + "attn_qkv.weight", p + "attn_qkv.bias"),
            wo=w.linear(p + "attn_output.weight", p + "attn_output.bias"), ffn_norm=w.vector(p + "ffn_norm.weight"),
            w_gate_up=w.linear(p + "ffn_up.weight"), w_down=w.linear(p + "ffn_down.weight"),
        )

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, segments: list[Segment],
              cache: KVCache, trace: dict | None = None) -> np.ndarray:
        a, L = self.args, self.layers[i]
        T = x.shape[0]
        nq, nkv = a.n_head * a.head_dim, a.n_head_kv * a.head_dim
        qkv = L.wqkv(Activations(rms_norm(x, L.attn_norm, a.rms_eps)))  # (T, nq + 2 nkv)
        q = qkv[:, :nq].reshape(T, a.n_head, a.head_dim)
        k = qkv[:, nq:nq + nkv].reshape(T, a.n_head_kv, a.head_dim)
        v = np.ascontiguousarray(qkv[:, nq + nkv:]).reshape(T, a.n_head_kv, a.head_dim)
        rope = self.rope_of(i, cache)
        q, k = rope.apply(q, positions), rope.apply(k, positions)
        qs = q * self.q_scale
        attn = np.empty((T, nq), np.float32)
        start = 0
        for seg in segments:
            rows = slice(start, start + seg.n)
            kc, vc = cache.store(i, seg, k[rows], v[rows])
            attn[rows] = attention(qs[rows], kc, vc, seg.pos0, 1.0)
            start += seg.n
        x = x + L.wo(attn)  # (T, n_embd)
        gu = L.w_gate_up(Activations(rms_norm(x, L.ffn_norm, a.rms_eps)))  # (T, 2 n_ff)
        ff = swiglu(np.ascontiguousarray(gu[:, :a.n_ff]), np.ascontiguousarray(gu[:, a.n_ff:]))
        out = x + L.w_down(ff)
        if trace is not None:
            trace.update({f"Qcur-{i}": q, f"Kcur-{i}": k, f"Vcur-{i}": v, f"kqv_out-{i}": attn,
                          f"ffn_inp-{i}": x, f"ffn_swiglu-{i}": ff, f"l_out-{i}": out})
        return out
