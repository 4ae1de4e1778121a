"""olmo2: no pre-norms; RMS norms of q and k over all heads at once (before RoPE, NEOX), and after each sublayer
(post_attention_norm, post_ffw_norm) before its residual add; SwiGLU FFN."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops import RopeTable, attention, rms_norm, swiglu
from ..ops.linear import Linear
from .base import DecoderModel, KVCache, ModelArgs, Segment, Weights


@dataclass
class Olmo2Layer:
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    q_norm: np.ndarray  # (n_head * head_dim,)
    k_norm: np.ndarray  # (n_head_kv * head_dim,)
    attn_post_norm: np.ndarray
    w_gate: Linear
    w_up: Linear
    w_down: Linear
    ffn_post_norm: np.ndarray


class Model(DecoderModel):
    def __init__(self, g: GGUFFile, args: ModelArgs | None = None):
        args = args or ModelArgs.from_gguf(g, rope_neox=True)
        super().__init__(g, args)
        self.rope = args.rope_table(neox=True)
        self.scale = 1.0 / np.sqrt(args.head_dim)

    def rope_of(self, layer: int, cache: KVCache) -> RopeTable:
        return self.rope

    def load_layer(self, w: Weights, i: int) -> Olmo2Layer:
        p = f"blk.{i}."
        return Olmo2Layer(
            wq=w.linear(p + "attn_q.weight"), wk=w.linear(p + "attn_k.weight"), wv=w.linear(p + "attn_v.weight"),
            wo=w.linear(p + "attn_output.weight"),
            q_norm=w.vector(p + "attn_q_norm.weight"), k_norm=w.vector(p + "attn_k_norm.weight"),
            attn_post_norm=w.vector(p + "post_attention_norm.weight"),
            w_gate=w.linear(p + "ffn_gate.weight"), w_up=w.linear(p + "ffn_up.weight"),
            w_down=w.linear(p + "ffn_down.weight"), ffn_post_norm=w.vector(p + "post_ffw_norm.weight"),
        )

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, segments: list[Segment],
              cache: KVCache, trace: dict | None = None) -> np.ndarray:
        a, L = self.args, self.layers[i]
        T = x.shape[0]
        hx = Activations(x)  # the block's input itself: no norm before attention
        q = rms_norm(L.wq(hx), L.q_norm, a.rms_eps).reshape(T, a.n_head, a.head_dim)
        k = rms_norm(L.wk(hx), L.k_norm, a.rms_eps).reshape(T, a.n_head_kv, a.head_dim)
        v = L.wv(hx).reshape(T, a.n_head_kv, a.head_dim)
        q, k = self.rope.apply(q, positions), self.rope.apply(k, positions)
        attn = np.empty((T, a.n_head * a.head_dim), np.float32)
        start = 0
        for seg in segments:
            rows = slice(start, start + seg.n)
            kc, vc = cache.store(i, seg, k[rows], v[rows])
            attn[rows] = attention(q[rows], kc, vc, seg.pos0, self.scale)
            start += seg.n
        x = x + rms_norm(L.wo(attn), L.attn_post_norm, a.rms_eps)  # (T, n_embd)
        hq = Activations(x)
        ff = swiglu(L.w_gate(hq), L.w_up(hq))  # (T, n_ff)
        out = x + rms_norm(L.w_down(ff), L.ffn_post_norm, a.rms_eps)
        if trace is not None:
            trace.update({f"Qcur-{i}": q, f"Kcur-{i}": k, f"Vcur-{i}": v, f"kqv_out-{i}": attn,
                          f"ffn_inp-{i}": x, f"ffn_swiglu-{i}": ff, f"l_out-{i}": out})
        return out
