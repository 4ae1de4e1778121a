"""gemma3: scaled embeddings, q/k RMS norms, post-attention and post-FFN norms, GELU-gated FFN,
sliding-window attention on 5 of every 6 layers (those use RoPE base 10000), NEOX RoPE, tied output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gguf import GGUFFile
from ..kernels import Activations
from ..ops import RopeTable, attention, geglu, rms_norm
from ..ops.linear import Linear
from .base import DecoderModel, KVCache, ModelArgs, ModelError, Segment, Weights

SWA_PATTERN = 6  # llama.cpp's default for gemma3: layer il is sliding-window when il % 6 < 5


@dataclass
class Gemma3Layer:
    attn_norm: np.ndarray
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    q_norm: np.ndarray | None  # gemma2 has none
    k_norm: np.ndarray | None
    attn_post_norm: np.ndarray
    ffn_norm: np.ndarray
    w_gate: Linear
    w_up: Linear
    w_down: Linear
    ffn_post_norm: np.ndarray


def gemma3_args(g: GGUFFile, pattern: int = SWA_PATTERN, window: int = 0, base_swa: float = 10000.0) -> ModelArgs:
    """gemma3's hyper-parameters; gemma2 passes its own defaults (every other layer, a window of 4096, one base)."""
    window = int(g.arch_get("attention.sliding_window", window))
    n_layer = int(g.arch_get("block_count"))
    given = g.arch_get("attention.sliding_window_pattern", pattern)
    if isinstance(given, (list, tuple)):  # one flag per layer (true: sliding window), as newer converters write
        if len(given) != n_layer:
            raise ModelError(f"{g.path}: sliding_window_pattern has {len(given)} flags for {n_layer} layers")
        swa = tuple(window > 0 and bool(f) for f in given)
    else:
        swa = tuple(window > 0 and (i % int(given) < int(given) - 1) for i in range(n_layer))
    args = ModelArgs.from_gguf(g, rope_neox=True, swa_window=window, swa_layers=swa,
                               rope_base_swa=float(g.arch_get("rope.freq_base_swa", base_swa)))
    args.attn_scale = float(np.float32(1.0) / np.sqrt(np.float32(args.head_dim)))  # 1.0f / sqrtf(head_dim)
    return args


class Model(DecoderModel):
    swa_freq_scale = 1.0  # the sliding-window layers' RoPE frequency scale (gemma3: none; gemma2: the model's)

    def __init__(self, g: GGUFFile, args: ModelArgs | None = None):
        args = args or gemma3_args(g)
        super().__init__(g, args)
        self.embed_scale = float(np.float32(np.sqrt(args.n_embd)))
        n_ctx = args.n_ctx_train
        self.rope_global = args.rope_table(neox=True)
        self.rope_local = RopeTable(args.n_rot, args.rope_base_swa, n_ctx, True, self.swa_freq_scale)
        self.attn_softcap = float(g.arch_get("attn_logit_softcapping", 0.0))  # gemma2's; 0 = none

    def rope_of(self, layer: int, cache: KVCache) -> RopeTable:
        return self.rope_local if self.args.is_swa(layer) else self.rope_global

    def load_layer(self, w: Weights, i: int) -> Gemma3Layer:
        p = f"blk.{i}."
        return Gemma3Layer(
            attn_norm=w.vector(p + "attn_norm.weight"),
            wq=w.linear(p + "attn_q.weight"), wk=w.linear(p + "attn_k.weight"),
            wv=w.linear(p + "attn_v.weight"), wo=w.linear(p + "attn_output.weight"),
            q_norm=w.optional_vector(p + "attn_q_norm.weight"), k_norm=w.optional_vector(p + "attn_k_norm.weight"),
            attn_post_norm=w.vector(p + "post_attention_norm.weight"),
            ffn_norm=w.vector(p + "ffn_norm.weight"), w_gate=w.linear(p + "ffn_gate.weight"),
            w_up=w.linear(p + "ffn_up.weight"), w_down=w.linear(p + "ffn_down.weight"),
            ffn_post_norm=w.vector(p + "post_ffw_norm.weight"),
        )

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, segments: list[Segment],
              cache: KVCache, trace: dict | None = None) -> np.ndarray:
        a, L = self.args, self.layers[i]
        T = x.shape[0]
        swa = a.is_swa(i)
        rope = self.rope_local if swa else self.rope_global
        h = rms_norm(x, L.attn_norm, a.rms_eps)  # (T, n_embd)
        if trace is not None:
            trace[f"attn_norm-{i}"] = h
        hq = Activations(h)  # quantized once for q, k and v
        q = L.wq(hq).reshape(T, a.n_head, a.head_dim)
        k = L.wk(hq).reshape(T, a.n_head_kv, a.head_dim)
        if L.q_norm is not None:
            q, k = rms_norm(q, L.q_norm, a.rms_eps), rms_norm(k, L.k_norm, a.rms_eps)
        v = L.wv(hq).reshape(T, a.n_head_kv, a.head_dim)
        q, k = rope.apply(q, positions), rope.apply(k, positions)
        qs = q * np.float32(a.attn_scale)  # llama.cpp scales Q before attention (then kq_scale = 1)
        attn = np.empty((T, a.n_head * a.head_dim), np.float32)
        start = 0
        for seg in segments:
            rows = slice(start, start + seg.n)
            kc, vc = cache.store(i, seg, k[rows], v[rows])
            attn[rows] = attention(qs[rows], kc, vc, seg.pos0, 1.0, a.swa_window if swa else 0, self.attn_softcap)
            start += seg.n
        x = x + rms_norm(L.wo(attn), L.attn_post_norm, a.rms_eps)  # (T, n_embd)
        h = rms_norm(x, L.ffn_norm, a.rms_eps)
        hq = Activations(h)
        ff = geglu(L.w_gate(hq), L.w_up(hq))  # (T, n_ff)
        out = x + rms_norm(L.w_down(ff), L.ffn_post_norm, a.rms_eps)
        if trace is not None:
            trace.update({f"Qcur-{i}": q, f"Kcur-{i}": k, f"Vcur-{i}": v, f"kqv_out-{i}": attn,
                          f"sa_out-{i}": x, f"ffn_geglu-{i}": ff, f"l_out-{i}": out})
        return out
