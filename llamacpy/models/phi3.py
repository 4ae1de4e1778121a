"""phi3 (Phi-3, Phi-4-mini): the llama block with one fused q/k/v matrix (attn_qkv, rows q then k then v) and one
fused gate/up matrix (ffn_up, the gate's rows first: ggml_swiglu of the product), NEOX RoPE, Q scaled by
1/sqrt(head_dim) before attention (as llama.cpp: the f16 rounding of Q sees the scaled values)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops import RopeTable, attention, rms_norm, swiglu
from ..ops.linear import Linear
from .base import DecoderModel, KVCache, ModelArgs, ModelError, Segment, Weights


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
        if any(g.tensors.get(f"rope_factors_{k}.weight") is not None for k in ("long", "short")):
            raise ModelError(f"{g.path}: phi3's LongRoPE factors (128k-context models) are not supported yet")
        self.rope = RopeTable(args.n_rot, args.rope_base, args.n_ctx_train, True, args.rope_scale,
                              yarn=args.yarn)
        self.q_scale = np.float32(1.0) / np.sqrt(np.float32(args.head_dim))

    def rope_of(self, layer: int) -> RopeTable:
        return self.rope

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
        q, k = self.rope.apply(q, positions), self.rope.apply(k, positions)
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
