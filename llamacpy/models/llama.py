"""llama: RMS norm, GQA attention with RoPE (NORM layout), SwiGLU FFN. Also the base of qwen2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops import RopeTable, attention, rms_norm, swiglu
from ..ops.linear import Linear
from .base import DecoderModel, KVCache, ModelArgs, Segment, Weights


@dataclass
class LlamaLayer:
    attn_norm: np.ndarray
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    ffn_norm: np.ndarray
    w_gate: Linear
    w_up: Linear
    w_down: Linear


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
            wq=w.linear(p + "attn_q.weight", p + "attn_q.bias"),
            wk=w.linear(p + "attn_k.weight", p + "attn_k.bias"),
            wv=w.linear(p + "attn_v.weight", p + "attn_v.bias"),
            wo=w.linear(p + "attn_output.weight"),
            ffn_norm=w.vector(p + "ffn_norm.weight"), w_gate=w.linear(p + "ffn_gate.weight"),
            w_up=w.linear(p + "ffn_up.weight"), w_down=w.linear(p + "ffn_down.weight"),
        )

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, segments: list[Segment],
              cache: KVCache, trace: dict | None = None) -> np.ndarray:
        a, L = self.args, self.layers[i]
        T = x.shape[0]
        h = rms_norm(x, L.attn_norm, a.rms_eps)  # (T, n_embd)
        if trace is not None:
            trace[f"attn_norm-{i}"] = h
        hq = Activations(h)  # quantized once for q, k and v
        q = L.wq(hq).reshape(T, a.n_head, a.head_dim)
        k = L.wk(hq).reshape(T, a.n_head_kv, a.head_dim)
        v = L.wv(hq).reshape(T, a.n_head_kv, a.head_dim)
        q, k = self.rope.apply(q, positions), self.rope.apply(k, positions)
        attn = np.empty((T, a.n_head * a.head_dim), np.float32)
        start = 0
        for seg in segments:
            rows = slice(start, start + seg.n)
            kc, vc = cache.store(i, seg, k[rows], v[rows])
            attn[rows] = attention(q[rows], kc, vc, seg.pos0, self.scale)
            start += seg.n
        x = x + L.wo(attn)  # (T, n_embd)
        h = rms_norm(x, L.ffn_norm, a.rms_eps)
        hq = Activations(h)
        ff = swiglu(L.w_gate(hq), L.w_up(hq))  # (T, n_ff)
        out = x + L.w_down(ff)
        if trace is not None:
            trace.update({f"Qcur-{i}": q, f"Kcur-{i}": k, f"Vcur-{i}": v, f"kqv_out-{i}": attn,
                          f"ffn_inp-{i}": x, f"ffn_swiglu-{i}": ff, f"l_out-{i}": out})
        return out
