"""llama: RMS norm, GQA attention with RoPE (NORM layout), SwiGLU FFN, or routed experts where the file has
`ffn_gate_inp` (Mixtral; qwen3moe, granitemoe...). Also the base of qwen2 and the other llama-like families."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..gguf import GGMLType, GGUFFile, Tensor
from ..kernels import Activations, WeightMatrix
from ..kernels.dispatch import FORMATS, KINDS, ROW_EXACT, kind_set
from ..kernels.threads import ensure_threads
from ..kernels.weight import VEC_DOT_BATCH, repacked_by_ggml
from ..ops import RopeTable, attention, relu_sqr, rms_norm, swiglu
from ..ops.linear import Linear
from ..ops.moe import MoE
from .base import DecoderModel, KVCache, ModelArgs, Segment, Weights
from .llama_step import layer_step


@dataclass
class LlamaLayer:
    attn_norm: np.ndarray
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    ffn_norm: np.ndarray
    w_gate: Linear | None  # the dense FFN (None in a MoE layer)
    w_up: Linear | None
    w_down: Linear | None
    # RMS norms of q and k before RoPE, when the file has them: per head (qwen3) or over all heads (olmoe)
    q_norm: np.ndarray | None = None
    k_norm: np.ndarray | None = None
    moe: MoE | None = None
    sinks: np.ndarray | None = None  # (n_head,) attention sink logits (gpt-oss)


class Model(DecoderModel):
    rope_neox = False
    moe_norm_w = True  # build_moe_ffn's norm_w: the chosen experts' weights are renormalized to sum 1
    ffn_norm_name = "ffn_norm"  # the FFN's pre-norm tensor (seed_oss calls it post_attention_norm)
    ffn_gated = True  # SwiGLU FFN; False: relu(up x)^2, no gate matrix (arcee)
    moe_oai = False  # gpt-oss's experts (SOFTMAX_WEIGHT gating, swiglu_oai, per-expert biases)

    def __init__(self, g: GGUFFile, args: ModelArgs | None = None):
        args = args or ModelArgs.from_gguf(g, rope_neox=self.rope_neox)
        super().__init__(g, args)
        # llama 3.x: per-pair frequency factors (rope_freqs.weight, written by llama.cpp's converter)
        self.rope = args.rope_table(freq_factors=self.w.optional_vector("rope_freqs.weight"))
        self.scale = 1.0 / np.sqrt(args.head_dim)
        self.residual_scale = 1.0  # each block's attention and FFN outputs are scaled by this (granite)
        self.rope_layers = (True,) * args.n_layer  # the layers whose q and k are rotated (smollm3 skips some)
        self.attn_temp: tuple[float, int] | None = None  # (scale, floor): llama 4's q temperature (mistral3)
        self.fused_gate: Callable[[], bool] | None = None  # while false, no fused step (engine/precompile.py)

    def rope_of(self, layer: int, cache: KVCache) -> RopeTable | None:
        return self.rope if self.rope_layers[layer] else None

    def forward(self, tokens: np.ndarray, segments: list[Segment], cache: KVCache,
                output_rows: np.ndarray | None = None, trace: dict | None = None,
                row_exact: bool = False) -> np.ndarray:
        """As `DecoderModel.forward`; batches of up to VEC_DOT_BATCH tokens run each layer as one numba
        call (`llama_step.layer_step`: same kernels, same results, no Python between operations).
        `row_exact`: every row gets the bits a one-row step gives it (repacked weights without ggml's
        4-row gemm kernels), for checking drafted tokens; batches of up to VEC_DOT_BATCH tokens."""
        tokens = np.asarray(tokens, dtype=np.int64)
        steps = self._layer_steps(row_exact)
        if steps is not None and self.fused_gate is not None:  # compiling elsewhere (engine/precompile.py)
            if not self.fused_gate():
                steps = None
            else:
                self.fused_gate = None
        if trace is not None or steps is None or not 0 < len(tokens) <= VEC_DOT_BATCH \
                or cache.type_k != GGMLType.F16 or cache.type_v != GGMLType.F16 \
                or self.lora_active or Linear.observer is not None:  # the fused step: f16 K/V, no adapters,
            # and no Linear calls to observe
            return super().forward(tokens, segments, cache, output_rows, trace, row_exact)
        a = self.args
        for s in segments:
            if s.pos0 + s.n > cache.n_ctx:
                raise ValueError(f"context full: position {s.pos0 + s.n} > n_ctx {cache.n_ctx}")
        positions = np.concatenate([np.arange(s.pos0, s.pos0 + s.n) for s in segments])
        seqs = np.concatenate([np.full(s.n, s.seq, np.int64) for s in segments])
        if output_rows is None:
            output_rows = np.cumsum([s.n for s in segments]) - 1
        x = self.embed(tokens)  # (T, n_embd)
        ensure_threads()  # numba's thread count is per call site's thread and the embedding lookup sets 1
        eps, scale = np.float32(a.rms_eps), np.float32(self.scale)
        for i, L in enumerate(self.layers):
            layer_step(x, seqs, positions, L.attn_norm, L.ffn_norm, eps, *steps[i], self.rope.cos, self.rope.sin,
                       a.n_rot, a.rope_neox, cache.k[i].view(np.uint16), cache.v[i].view(np.uint16), a.n_head,
                       a.head_dim, scale)
        x = rms_norm(x[output_rows], self.output_norm, a.rms_eps)  # (R, n_embd)
        w = self.output.w
        if row_exact and len(x) >= 4 and w.vec_dot_type is not None and repacked_by_ggml(w.type, w.n_out):
            return np.concatenate([self.logits(x[i:i + 1]) for i in range(len(x))])  # (R, n_vocab)
        return self.logits(x)  # (R, n_vocab)

    def _layer_steps(self, row_exact: bool = False) -> list[tuple] | None:
        """Per layer, the arguments `layer_step` needs about the weights (None: some weight has a type
        the integer kernels do not cover, e.g. F16; the layer-by-layer path handles those)."""
        if row_exact:
            if not hasattr(self, "_steps_exact"):
                self._steps_exact = steps = self._layer_steps()
                if steps is not None:
                    exact = [np.array([ROW_EXACT.get(int(k), int(k)) for k in s[1]], np.int64) for s in steps]
                    kset = kind_set(np.concatenate(exact))
                    self._steps_exact = [(w, kinds, kset, *rest) for (w, _, _, *rest), kinds in zip(steps, exact)]
            return self._steps_exact
        if not hasattr(self, "_steps"):
            self._steps = None
            steps = []
            for L in self.layers:
                if L.moe is not None or L.w_gate is None or L.wo.bias is not None or L.sinks is not None \
                        or self.args.swa_window or (
                        L.q_norm is not None and len(L.q_norm) != self.args.head_dim):
                    return None  # the fused step has no experts, relu^2 FFN, output bias, sinks, window, wide q/k norm
                mats = [L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down]
                if any(m.w.vec_dot_type is None or (m.w.type, False) not in KINDS for m in mats) \
                        or self.residual_scale != 1 \
                        or not all(self.rope_layers) or self.attn_temp is not None:
                    return None  # the fused step has no residual scale, RoPE-less layers or q temperature
                kinds = np.array([KINDS[(m.w.type, repacked_by_ggml(m.w.type, m.n_out))] for m in mats], np.int64)
                need = np.zeros((4, 3), np.bool_)
                for group, ms in enumerate(([0, 1, 2], [3], [4, 5], [6])):
                    for j in ms:
                        need[group, FORMATS[mats[j].w.vec_dot_type]] = True
                biases = [m.bias if m.bias is not None else np.zeros(0, np.float32) for m in mats[:3]]
                has_bias = np.array([m.bias is not None for m in mats[:3]])
                none = np.zeros(0, np.float32)
                qk_norm = (none, none) if L.q_norm is None else (L.q_norm, L.k_norm)
                steps.append((tuple(m.w.data for m in mats), kinds, need, tuple(biases), has_bias, qk_norm,
                              L.q_norm is not None))
            kset = kind_set(np.concatenate([s[1] for s in steps]))
            self._steps = [(w, kinds, kset, *rest) for w, kinds, *rest in steps]
        return self._steps

    def load_layer(self, w: Weights, i: int) -> LlamaLayer:
        p = f"blk.{i}."
        moe = self.load_moe(w, p) if w.has(p + "ffn_gate_inp.weight") else None
        dense = (None, None, None) if moe else (
            w.linear(p + "ffn_gate.weight") if self.ffn_gated else None, w.linear(p + "ffn_up.weight"),
            w.linear(p + "ffn_down.weight"))
        return LlamaLayer(
            attn_norm=w.vector(p + "attn_norm.weight"),
            wq=w.linear(p + "attn_q.weight", p + "attn_q.bias"),
            wk=w.linear(p + "attn_k.weight", p + "attn_k.bias"),
            wv=w.linear(p + "attn_v.weight", p + "attn_v.bias"),
            wo=w.linear(p + "attn_output.weight", p + "attn_output.bias"),
            ffn_norm=w.vector(p + self.ffn_norm_name + ".weight"),
            w_gate=dense[0], w_up=dense[1], w_down=dense[2],
            q_norm=w.optional_vector(p + "attn_q_norm.weight"), k_norm=w.optional_vector(p + "attn_k_norm.weight"),
            moe=moe, sinks=w.optional_vector(p + "attn_sinks.weight"),
        )

    def load_moe(self, w: Weights, p: str) -> MoE:
        """The layer's routed experts (`{arch}.expert_used_count` of them per token) and its shared expert,
        where the file has one (`ffn_*_shexp`, gated by a sigmoid of `ffn_gate_inp_shexp` when present)."""
        n_used = int(self.g.arch_get("expert_used_count", 0))
        shared = None
        if w.has(p + "ffn_up_shexp.weight"):
            shared = tuple(w.linear(p + f"ffn_{m}_shexp.weight") for m in ("gate", "up", "down"))
            if w.has(p + "ffn_gate_inp_shexp.weight"):  # a vector {n_embd}: a matrix of one row
                t = w.tensor(p + "ffn_gate_inp_shexp.weight")
                shared += (Linear(WeightMatrix(Tensor(t.name, t.type, (1, t.shape[-1]), t.data.reshape(1, -1)))),)
        biases = None
        if w.has(p + "ffn_up_exps.bias"):
            biases = tuple(w.vector(p + f"ffn_{m}_exps.bias") for m in ("up", "gate", "down"))
        return MoE(w.linear(p + "ffn_gate_inp.weight", p + "ffn_gate_inp.bias"), w.tensor(p + "ffn_up_exps.weight"),
                   w.tensor(p + "ffn_gate_exps.weight"), w.tensor(p + "ffn_down_exps.weight"), n_used,
                   self.moe_norm_w, shared=shared, biases=biases, oai=self.moe_oai)

    def _residual(self, branch: np.ndarray) -> np.ndarray:
        if self.residual_scale != 1.0:
            branch *= np.float32(self.residual_scale)
        return branch

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
        if L.q_norm is not None:  # per head, or over all heads at once (then reshaped back)
            q = rms_norm(q.reshape(T, -1, len(L.q_norm)), L.q_norm, a.rms_eps).reshape(q.shape)
            k = rms_norm(k.reshape(T, -1, len(L.k_norm)), L.k_norm, a.rms_eps).reshape(k.shape)
        if self.rope_layers[i]:
            q, k = self.rope.apply(q, positions), self.rope.apply(k, positions)
        if self.attn_temp is not None:  # llm_graph_input_attn_temp: in double, then f32
            temp, floor = self.attn_temp
            q *= (np.log(np.floor(positions / floor) + 1.0) * temp + 1.0).astype(np.float32)[:, None, None]
        attn = np.empty((T, a.n_head * a.head_dim), np.float32)
        window = a.swa_window if a.is_swa(i) else 0
        start = 0
        for seg in segments:
            rows = slice(start, start + seg.n)
            kc, vc = cache.store(i, seg, k[rows], v[rows])
            attn[rows] = attention(q[rows], kc, vc, seg.pos0, self.scale, window, sinks=L.sinks)
            start += seg.n
        x = x + self._residual(L.wo(attn))  # (T, n_embd)
        h = rms_norm(x, L.ffn_norm, a.rms_eps)
        if L.moe is not None:
            out = x + self._residual(L.moe(h))
        else:
            hq = Activations(h)
            # (T, n_ff)
            ff = swiglu(L.w_gate(hq), L.w_up(hq)) if L.w_gate is not None else relu_sqr(L.w_up(hq))
            out = x + self._residual(L.w_down(ff))
            if trace is not None:
                trace[f"ffn_swiglu-{i}"] = ff
        if trace is not None:
            trace.update({f"Qcur-{i}": q, f"Kcur-{i}": k, f"Vcur-{i}": v, f"kqv_out-{i}": attn,
                          f"ffn_inp-{i}": x, f"l_out-{i}": out})
        return out
