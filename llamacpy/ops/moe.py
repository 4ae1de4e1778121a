"""Mixture-of-experts feed-forward (llama.cpp's build_moe_ffn with softmax gating and SwiGLU experts).

Each token's router logits (ffn_gate_inp) go through ggml's softmax; its `n_used` most probable experts are
chosen (descending, as ggml_argsort_top_k), their probabilities optionally renormalized to sum 1 (norm_w)
and scaled; each chosen expert's SwiGLU output is weighted and the slots are summed in rank order.

The expert matrices are 3-D tensors (n_expert, rows, n_in); each expert is a `WeightMatrix` over its slice of
the memory map, so a decode step reads only the chosen experts' bytes (`bytes_read`). During prefill the
tokens routed to one expert are multiplied as one batch. ggml computes MUL_MAT_ID row by row (vec_dot, or
the repacked gemv: never its 4-row gemm), so repacked experts are fed fewer than 4 rows at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..gguf import Tensor
from ..kernels import Activations, WeightMatrix
from ..kernels.simd import HAS_AVX512
from ..kernels.weight import repacked_by_ggml
from .basic import _v_expf, _v_expf_avx2, silu, swiglu, swiglu_oai
from .linear import Linear

GEMV_ROWS = 3  # repacked experts: at most this many activation rows per call (4 would take the gemm kernel)
F16_MIN_NORMAL = np.float32(6.103515625e-5)  # ggml_clamp of the weight sum in build_moe_ffn


@njit(cache=True, nogil=True, inline="always")
def _reduce16(v, o):
    """_mm512_reduce_add_ps of v[o:o+16]: halves added pairwise (256, 128, 64, 32 bits)."""
    a = np.empty(8, np.float32)
    for i in range(8):
        a[i] = v[o + i] + v[o + 8 + i]
    for i in range(4):
        a[i] = a[i] + a[i + 4]
    return (a[0] + a[2]) + (a[1] + a[3])


@njit(cache=True, nogil=True, inline="always")
def _reduce8(v, o):
    """The AVX2 horizontal sum of v[o:o+8] in ggml_vec_soft_max_f32 (high + low 128, movehl, movehdup)."""
    a0, a1, a2, a3 = v[o] + v[o + 4], v[o + 1] + v[o + 5], v[o + 2] + v[o + 6], v[o + 3] + v[o + 7]
    return (a0 + a2) + (a1 + a3)


@njit(cache=True, nogil=True)
def _softmax(x, p):
    """ggml_soft_max of the row x into p: ggml_v_expf over whole SIMD widths, expf for the tail, the sum in
    double, then times (float)(1 / sum)."""
    n = x.shape[0]
    lanes = 16 if HAS_AVX512 else 8
    mx = x[0]
    for i in range(1, n):
        mx = max(mx, x[i])
    s = 0.0
    i = 0
    while i + lanes <= n:
        for j in range(lanes):
            d = x[i + j] - mx
            p[i + j] = _v_expf(d) if HAS_AVX512 else _v_expf_avx2(d)
        s += np.float64(_reduce16(p, i) if HAS_AVX512 else _reduce8(p, i))
        i += lanes
    while i < n:
        p[i] = np.exp(x[i] - mx)
        s += np.float64(p[i])
        i += 1
    inv = np.float32(1.0 / s)
    for i in range(n):
        p[i] = p[i] * inv


@njit(cache=True, nogil=True)
def route(logits, n_used, norm_w, w_scale, weight_softmax, selected, weights):
    """Per token row of logits (T, n_expert), build_moe_ffn's routing: the probabilities (ggml's softmax of the
    logits; with weight_softmax, gpt-oss's SOFTMAX_WEIGHT gating, the logits themselves), the n_used largest in
    descending order -> selected (T, n_used) int64, and their weights (T, n_used) f32: the softmax of the
    chosen logits with weight_softmax; divided by their (clamped) sum when norm_w; times w_scale unless it is
    0 or 1."""
    T, n = logits.shape
    p = np.empty(n, np.float32)
    w = np.empty(n_used, np.float32)
    for t in range(T):
        if weight_softmax:
            p[:] = logits[t]
        else:
            _softmax(logits[t], p)
        order = np.argsort(-p, kind="mergesort")  # descending, ties by expert index
        for k in range(n_used):
            selected[t, k] = order[k]
            w[k] = p[order[k]]
        if weight_softmax:
            _softmax(w.copy(), w)
        total = 0.0
        for k in range(n_used):
            weights[t, k] = w[k]
            total += np.float64(w[k])
        if norm_w:
            div = max(np.float32(total), F16_MIN_NORMAL)
            for k in range(n_used):
                weights[t, k] = weights[t, k] / div
        if w_scale != 0 and w_scale != 1:
            for k in range(n_used):
                weights[t, k] = weights[t, k] * w_scale


def _experts(t: Tensor) -> list[WeightMatrix]:
    """The experts of a 3-D tensor (n_expert, rows, n_in) as matrices over their slices of its bytes."""
    if len(t.shape) != 3:
        raise ValueError(f"{t.name}: expert weights need 3 dimensions, got shape {t.shape}")
    n_expert, rows, n_in = t.shape
    return [WeightMatrix(Tensor(f"{t.name}[{e}]", t.type, (rows, n_in), t.data[e * rows:(e + 1) * rows]))
            for e in range(n_expert)]


class MoE:
    """The routed experts of one layer: `moe(h)` for h (T, n_embd) normed rows -> (T, n_embd)."""

    def __init__(self, gate_inp: Linear, up: Tensor, gate: Tensor, down: Tensor, n_used: int,
                 norm_w: bool, w_scale: float = 0.0, shared: tuple[Linear, ...] | None = None,
                 biases: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, oai: bool = False):
        """`shared`: a shared expert's (gate, up, down) that every token runs, added to the routed sum; with a
        fourth (1, n_embd) matrix its output is first scaled by the sigmoid of that projection (qwen2moe).
        `biases`: per expert (n_expert, rows) biases of up, gate and down (ggml_add_id). `oai`: gpt-oss's
        experts: SOFTMAX_WEIGHT gating and the clamped swiglu_oai activation."""
        self.gate_inp, self.n_used, self.norm_w, self.w_scale = gate_inp, n_used, norm_w, np.float32(w_scale)
        self.shared, self.biases, self.oai = shared, biases, oai
        self.up, self.gate, self.down = _experts(up), _experts(gate), _experts(down)
        self.names = (up.name, gate.name, down.name)  # the 3-D tensors' names (for Linear.observer)
        self.n_expert = len(self.up)
        if not 0 < n_used <= self.n_expert or gate_inp.n_out != self.n_expert:
            raise ValueError(f"{up.name}: {n_used} of {self.n_expert} experts used, router of {gate_inp.n_out}")
        self.bytes_read = 0  # expert weight bytes read so far (decode reads only the chosen experts')

    def __call__(self, h: np.ndarray) -> np.ndarray:
        T = h.shape[0]
        logits = np.ascontiguousarray(self.gate_inp(h), dtype=np.float32)  # (T, n_expert)
        selected = np.empty((T, self.n_used), np.int64)
        weights = np.empty((T, self.n_used), np.float32)
        route(logits, self.n_used, self.norm_w, self.w_scale, self.oai, selected, weights)
        slots = np.zeros((self.n_used, T, h.shape[1]), np.float32)
        for e in np.unique(selected):
            rows, slot = np.nonzero(selected == e)  # the tokens routed to expert e, and at which rank
            if Linear.observer is not None:  # llama-imatrix walks MUL_MAT_ID's rows rank by rank, tokens within
                order = np.lexsort((rows, slot))
                rows, slot = rows[order], slot[order]
            y = self._expert(int(e), h[rows])
            slots[slot, rows] = y * weights[rows, slot][:, None]
        out = slots[0]
        for k in range(1, self.n_used):  # ggml adds the slots' views in rank order
            out = out + slots[k]
        if self.shared is not None:
            ha = Activations(h)
            sh = self.shared[2](swiglu(self.shared[0](ha), self.shared[1](ha)))
            if len(self.shared) == 4:
                g = self.shared[3](ha)  # (T, 1)
                sh = sh * (silu(g) / g)  # the sigmoid as llama.cpp writes it: silu(g) / g
            out = out + sh
        return out

    def _expert(self, e: int, x: np.ndarray) -> np.ndarray:
        up, gate, down = self.up[e], self.gate[e], self.down[e]
        self.bytes_read += up.nbytes + gate.nbytes + down.nbytes
        step = GEMV_ROWS if any(repacked_by_ggml(m.type, m.n_out) for m in (up, gate, down)) else len(x)
        b_up, b_gate, b_down = (b[e] for b in self.biases) if self.biases is not None else (None, None, None)
        act = swiglu_oai if self.oai else swiglu
        parts = []
        seen = Linear.observer
        for r in range(0, len(x), step):
            xa = Activations(x[r:r + step])
            if seen is not None:
                seen(self.names[0], xa.x, e, self.n_expert)
                seen(self.names[1], xa.x, e, self.n_expert)
            u, g = up.mul(xa), gate.mul(xa)
            if b_up is not None:
                u += b_up
                g += b_gate
            a = act(g, u)
            if seen is not None:
                seen(self.names[2], a, e, self.n_expert)
            y = down.mul(Activations(a))
            parts.append(y if b_down is None else y + b_down)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
