"""llama: RMS norm, GQA attention with RoPE (NORM layout), SwiGLU FFN. Also the base of qwen2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..ops import RopeTable, attention, rms_norm, silu
from .base import DecoderModel, KVCache, ModelArgs, Segment, Weights, linear


@dataclass
class LlamaLayer:
    attn_norm: np.ndarray
    wq: object
    wk: object
    wv: object
    wo: object
    bq: np.ndarray | None
    bk: np.ndarray | None
    bv: np.ndarray | None
    ffn_norm: np.ndarray
    w_gate: object
    w_up: object
    w_down: object


class Model(DecoderModel):
    rope_neox = False

    def __init__(self, g: GGUFFile, args: ModelArgs | None = None):
        args = args or ModelArgs.from_gguf(g, rope_neox=self.rope_neox)
        super().__init__(g, args)
        self.rope = RopeTable(args.n_rot, args.rope_base, args.n_ctx_train, args.rope_neox, args.rope_scale)
        self.scale = 1.0 / np.sqrt(args.head_dim)

    def load_layer(self, w: Weights, i: int) -> LlamaLayer:
        p = f"blk.{i}."
        return LlamaLayer(
            attn_norm=w.vector(p + "attn_norm.weight"),
            wq=w.matrix(p + "attn_q.weight"), wk=w.matrix(p + "attn_k.weight"),
            wv=w.matrix(p + "attn_v.weight"), wo=w.matrix(p + "attn_output.weight"),
            bq=w.optional_vector(p + "attn_q.bias"), bk=w.optional_vector(p + "attn_k.bias"),
            bv=w.optional_vector(p + "attn_v.bias"),
            ffn_norm=w.vector(p + "ffn_norm.weight"), w_gate=w.matrix(p + "ffn_gate.weight"),
            w_up=w.matrix(p + "ffn_up.weight"), w_down=w.matrix(p + "ffn_down.weight"),
        )

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, segments: list[Segment],
              cache: KVCache) -> np.ndarray:
        a, L = self.args, self.layers[i]
        T = x.shape[0]
        h = rms_norm(x, L.attn_norm, a.rms_eps)  # (T, n_embd)
        q = linear(L.wq, h, L.bq).reshape(T, a.n_head, a.head_dim)
        k = linear(L.wk, h, L.bk).reshape(T, a.n_head_kv, a.head_dim)
        v = linear(L.wv, h, L.bv).reshape(T, a.n_head_kv, a.head_dim)
        q, k = self.rope.apply(q, positions), self.rope.apply(k, positions)
        attn = np.empty((T, a.n_head * a.head_dim), np.float32)
        start = 0
        for seg in segments:
            rows = slice(start, start + seg.n)
            kc, vc = cache.store(i, seg, k[rows], v[rows])
            attn[rows] = attention(q[rows], kc, vc, seg.pos0, self.scale)
            start += seg.n
        x = x + linear(L.wo, attn)  # (T, n_embd)
        h = rms_norm(x, L.ffn_norm, a.rms_eps)
        ff = silu(linear(L.w_gate, h)) * linear(L.w_up, h)  # (T, n_ff)
        return x + linear(L.w_down, ff)
