"""Kernels: dequantization bit-exact with gguf-py, fused products equal to dequantize-then-multiply."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import quants

from llamacpy.gguf import BLOCK_LAYOUT, GGMLType, GGUFFile, Tensor
from llamacpy.kernels import KERNELS, Activations, WeightMatrix, dequantize, quantize, set_num_threads

# run through gguf-py's own dequantizer (kernels/gguf_py.py): these tests check the plumbing around it
GGUF_PY_TYPES = [GGMLType.IQ1_S, GGMLType.IQ1_M, GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ3_XXS,
                 GGMLType.IQ3_S, GGMLType.TQ1_0, GGMLType.TQ2_0]
ALL_TYPES = [
    GGMLType.F32,
    GGMLType.F16,
    GGMLType.BF16,
    GGMLType.Q4_0,
    GGMLType.Q4_1,
    GGMLType.Q5_0,
    GGMLType.Q5_1,
    GGMLType.Q8_0,
    GGMLType.Q2_K,
    GGMLType.Q3_K,
    GGMLType.Q4_K,
    GGMLType.Q5_K,
    GGMLType.Q6_K,
    GGMLType.IQ4_NL,
    GGMLType.IQ4_XS,
    GGMLType.MXFP4,
    *GGUF_PY_TYPES,
]

# byte offsets of the f16 scale fields inside one block, per type
F16_FIELDS = {
    GGMLType.Q4_0: (0,),
    GGMLType.Q4_1: (0, 2),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82),
    GGMLType.Q3_K: (108,),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
    GGMLType.IQ4_NL: (0,),
    GGMLType.IQ4_XS: (0,),
    **dict.fromkeys([GGMLType.IQ1_S, GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ3_XXS,
                     GGMLType.IQ3_S], (0,)),
    GGMLType.TQ1_0: (52,),
    GGMLType.TQ2_0: (64,),
}
# byte offsets of E8M0 exponents (MXFP4's block scale): kept near 2^0 so that products stay finite
E8M0_FIELDS = {GGMLType.MXFP4: (0,)}


def _reference(t: Tensor) -> np.ndarray:
    return quants.dequantize(np.asarray(t.data), t.type).reshape(t.shape)


def synthetic(qtype: GGMLType, n_out: int, n_in: int, seed: int = 0) -> Tensor:
    """Random blocks: random quant bits, scale fields set to finite f16 values of either sign."""
    rng = np.random.default_rng(seed)
    block_elems, block_bytes = BLOCK_LAYOUT[qtype]
    if qtype == GGMLType.F32:
        data = rng.standard_normal((n_out, n_in)).astype(np.float32).view(np.uint8)
    else:  # F16 / BF16 take every bit pattern (NaNs and infinities included)
        data = rng.integers(0, 256, (n_out, n_in // block_elems * block_bytes), dtype=np.uint8)
    if qtype in F16_FIELDS:
        blocks = data.reshape(-1, block_bytes)
        for off in F16_FIELDS[qtype]:
            scale = rng.uniform(-0.05, 0.05, blocks.shape[0]).astype(np.float16)
            blocks[:, off : off + 2] = scale.view(np.uint8).reshape(-1, 2)
    if qtype == GGMLType.IQ1_M:  # its f16 scale is the top nibbles of the four u16 scales (bytes 48-55)
        blocks = data.reshape(-1, block_bytes)
        h = rng.uniform(0.01, 0.05, blocks.shape[0]).astype(np.float16).view(np.uint16)
        sc = blocks[:, 48:56].copy().view(np.uint16)
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12)
        blocks[:, 48:56] = sc.view(np.uint8)
    for off in E8M0_FIELDS.get(qtype, ()):
        data.reshape(-1, block_bytes)[:, off] = rng.integers(118, 130, data.size // block_bytes, dtype=np.uint8)
    data.flags.writeable = False
    return Tensor(f"synthetic.{qtype.name}", qtype, (n_out, n_in), data)


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def test_every_type_has_kernels():
    assert set(ALL_TYPES) <= set(KERNELS)


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_dequantize_synthetic_is_bit_exact(qtype):
    t = synthetic(qtype, 48, 512)
    assert _bits_equal(dequantize(t), _reference(t))


@pytest.mark.parametrize(
    "qtype", [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0, GGMLType.MXFP4],
    ids=lambda t: t.name)
def test_dequantize_of_gguf_quantized_weights(qtype):
    w = np.random.default_rng(1).standard_normal((32, 256)).astype(np.float32)
    data = quants.quantize(w, qtype)
    t = Tensor("q", qtype, w.shape, data)
    got = dequantize(t)
    assert _bits_equal(got, _reference(t))
    assert _rel_err(got, w) < 0.2  # and it is the weights, roughly


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_fused_products_match_dequantized(qtype):
    n_out, n_in = 67, 768  # n_out not a multiple of the row chunk
    t = synthetic(qtype, n_out, n_in, seed=2)
    if qtype in (GGMLType.F16, GGMLType.BF16):  # finite values only for products
        vals = np.random.default_rng(3).standard_normal((n_out, n_in)).astype(np.float32)
        raw = (
            vals.astype(np.float16).view(np.uint8)
            if qtype == GGMLType.F16
            else (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        )
        t = Tensor("f", qtype, (n_out, n_in), raw.reshape(n_out, -1))
    W = _reference(t)
    w = WeightMatrix(t)
    rng = np.random.default_rng(4)
    x = rng.standard_normal(n_in).astype(np.float32)
    assert _rel_err(w.matvec(x), W @ x) < 1e-5
    out = np.full(n_out, np.nan, np.float32)
    assert w.matvec(x, out=out) is out and _rel_err(out, W @ x) < 1e-5
    for T in (1, 2, 3, 8, 16, 17, 70):
        X = rng.standard_normal((T, n_in)).astype(np.float32)
        got = w.matmul(X)
        assert got.shape == (T, n_out) and got.dtype == np.float32
        assert _rel_err(got, X @ W.T) < 1e-5, T


@pytest.mark.parametrize("qtype", [GGMLType.F32, GGMLType.F16, GGMLType.BF16], ids=lambda t: t.name)
def test_float_rows_of_any_length(qtype):
    """Block size 1: rows need not be a multiple of 32 (remainder lanes in the GEMV and small GEMM)."""
    vals = np.random.default_rng(9).standard_normal((21, 100)).astype(np.float32)
    raw = {
        GGMLType.F32: vals,
        GGMLType.F16: vals.astype(np.float16),
        GGMLType.BF16: (vals.view(np.uint32) >> 16).astype(np.uint16),
    }[qtype]
    t = Tensor("f", qtype, vals.shape, raw.view(np.uint8).reshape(21, -1))
    W = _reference(t)
    w = WeightMatrix(t)
    x = np.random.default_rng(10).standard_normal(100).astype(np.float32)
    assert _rel_err(w.matvec(x), W @ x) < 1e-5
    X = np.random.default_rng(11).standard_normal((5, 100)).astype(np.float32)
    assert _rel_err(w.matmul(X), X @ W.T) < 1e-5
    assert _bits_equal(dequantize(t), W)


def test_get_rows_and_bounds():
    t = synthetic(GGMLType.Q4_K, 40, 512)
    w = WeightMatrix(t)
    ids = np.array([3, 0, 39, 3])
    assert _bits_equal(w.get_rows(ids), _reference(t)[ids])
    assert w.get_rows(np.array([], np.int64)).shape == (0, 512)
    with pytest.raises(IndexError):
        w.get_rows(np.array([40]))
    with pytest.raises(IndexError):
        w.get_rows(np.array([-1]))


def test_shape_errors():
    w = WeightMatrix(synthetic(GGMLType.Q8_0, 8, 64))
    assert (w.n_out, w.n_in) == (8, 64)
    with pytest.raises(ValueError):
        w.matvec(np.zeros(32, np.float32))
    with pytest.raises(ValueError):
        w.matvec(np.zeros(64, np.float32), out=np.zeros(8, np.float64))
    with pytest.raises(ValueError):
        WeightMatrix(Tensor("v", GGMLType.F32, (64,), np.zeros((1, 256), np.uint8)))


def test_dequantize_keeps_shape_of_vectors_and_stacks():
    t = synthetic(GGMLType.F32, 1, 64)
    v = Tensor("v", GGMLType.F32, (64,), t.data)
    assert dequantize(v).shape == (64,)
    s = synthetic(GGMLType.Q8_0, 6, 64)
    s3 = Tensor("s", GGMLType.Q8_0, (2, 3, 64), s.data)
    assert _bits_equal(dequantize(s3), _reference(s).reshape(2, 3, 64))


def test_set_num_threads_gives_same_results():
    w = WeightMatrix(synthetic(GGMLType.Q6_K, 64, 512))
    x = np.random.default_rng(5).standard_normal(512).astype(np.float32)
    try:
        assert set_num_threads(1) == 1
        y1 = w.matvec(x)
    finally:
        n = set_num_threads()
    assert n >= 1
    np.testing.assert_allclose(w.matvec(x), y1, rtol=1e-5, atol=1e-6)


def test_kernels_run_from_other_threads():
    """numba's thread count is per thread: a worker thread (the engine's) must get the same answers."""
    import threading

    w_small = WeightMatrix(synthetic(GGMLType.Q4_1, 8, 256))  # below the parallel threshold
    w_big = WeightMatrix(synthetic(GGMLType.Q4_1, 512, 1024))
    x_small = np.random.default_rng(7).standard_normal(256).astype(np.float32)
    x_big = np.random.default_rng(8).standard_normal(1024).astype(np.float32)
    want = [w_small.matvec(x_small), w_big.matvec(x_big), w_big.matmul(np.stack([x_big] * 5))]
    got = []
    th = threading.Thread(
        target=lambda: got.extend(
            [w_small.matvec(x_small), w_big.matvec(x_big), w_big.matmul(np.stack([x_big] * 5))]
        )
    )
    th.start()
    th.join()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# -- real models -------------------------------------------------------------------------------------


def _check_model(path, max_rows=1024):
    g = GGUFFile(path)
    seen = {}
    for t in g.tensors.values():
        seen.setdefault(t.type, t)
    rng = np.random.default_rng(0)
    for t in seen.values():
        if t.data.shape[0] > max_rows:  # first rows of big tensors: the reference is slow
            t = Tensor(t.name, t.type, (max_rows, *t.shape[1:]), t.data[:max_rows])
        W = _reference(t)
        assert _bits_equal(dequantize(t), W), t.name
        if len(t.shape) == 2:
            w = WeightMatrix(t)
            x = rng.standard_normal(w.n_in).astype(np.float32)
            assert _rel_err(w.matvec(x), W @ x) < 1e-4, t.name
            X = rng.standard_normal((4, w.n_in)).astype(np.float32)
            assert _rel_err(w.matmul(X), X @ W.T) < 1e-4, t.name
            if w.vec_dot_type is not None:
                for T in (1, 4, 6):
                    want = _ggml_product(t, X := rng.standard_normal((T, w.n_in)).astype(np.float32))
                    assert np.abs(w.mul(X) - want).max() <= 1e-5 * np.abs(want).max(), (t.name, T)
    return set(seen)


@pytest.mark.slow
def test_smollm2_tensors(smollm2_path):
    assert _check_model(smollm2_path) >= {GGMLType.Q4_1, GGMLType.Q8_0, GGMLType.F32}


@pytest.mark.slow
def test_qwen05_tensors(qwen05_path):
    assert _check_model(qwen05_path) >= {GGMLType.Q5_0, GGMLType.Q8_0, GGMLType.Q6_K, GGMLType.Q4_K}


@pytest.mark.slow
def test_gemma_tensors(gemma_path):
    assert _check_model(gemma_path) >= {GGMLType.Q5_0, GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q8_0}


@pytest.mark.slow
def test_whole_real_matrix(qwen05_path):
    """One full FFN matrix of each K type, all rows (row chunking across the parallel workers)."""
    g = GGUFFile(qwen05_path)
    for name in ("blk.0.ffn_down.weight", "blk.0.ffn_gate.weight"):
        t = g.tensors[name]
        assert _bits_equal(dequantize(t), _reference(t)), name
        w = WeightMatrix(t)
        x = np.random.default_rng(6).standard_normal(w.n_in).astype(np.float32)
        assert _rel_err(w.matvec(x), dequantize(t) @ x) < 1e-4


# -- ggml's numerics: activations quantized to the vec_dot type, integer dot products ------------------

QUANT_TYPES = [t for t in ALL_TYPES if t not in (GGMLType.F32, GGMLType.F16, GGMLType.BF16, *GGUF_PY_TYPES)]


def _quantize_reference(X: np.ndarray, vdt: GGMLType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy version of ggml's x86 activation quantizers: (q, d, s) as `kernels.q8` documents them."""
    T, n = X.shape
    if vdt == GGMLType.Q8_K:
        B = X.reshape(T, -1, 256)
        vmax = np.take_along_axis(B, np.abs(B).argmax(axis=2)[..., None], axis=2)
        with np.errstate(divide="ignore"):
            iscale = np.where(vmax != 0, np.float32(-127.0) / vmax, np.float32(0.0)).astype(np.float32)
        q = np.minimum(np.float32(127.0), np.rint(iscale * B)).astype(np.int8)
        with np.errstate(divide="ignore"):
            d = np.where(iscale != 0, np.float32(1.0) / iscale, np.float32(0.0)).astype(np.float32)[..., 0]
        return q.reshape(T, n), d, q.reshape(T, -1, 16).sum(axis=2).astype(np.int16)
    B = X.reshape(T, -1, 32)
    amax = np.abs(B).max(axis=2, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, np.float32(127.0) / amax, np.float32(0.0)).astype(np.float32)
    q = np.rint(B * inv).astype(np.int8)
    d_raw = (amax / np.float32(127.0))[..., 0].astype(np.float32)
    d = d_raw.astype(np.float16).astype(np.float32)
    total = q.sum(axis=2, dtype=np.int32)
    if vdt == GGMLType.Q8_1:
        return q.reshape(T, n), d, (d_raw * total.astype(np.float32)).astype(np.float16).astype(np.float32)
    return q.reshape(T, n), d, total


@pytest.mark.parametrize("vdt", [GGMLType.Q8_0, GGMLType.Q8_1, GGMLType.Q8_K], ids=lambda t: t.name)
def test_activation_quantization_is_ggml_s(vdt):
    rng = np.random.default_rng(12)
    X = (rng.standard_normal((6, 512)) * np.exp(rng.uniform(-6, 3, (6, 512)))).astype(np.float32)
    X[1, :256] = 0.0  # empty blocks
    for T in (1, 6):  # one row (serial) and several
        got = quantize(X[:T], vdt)
        for g, w in zip((got.q, got.d, got.s), _quantize_reference(X[:T], vdt), strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w), (vdt, T)
    np.testing.assert_array_equal(got.f32(), (got.q.reshape(6, got.d.shape[1], -1) * got.d[..., None]).reshape(6, -1))


def _ggml_product(t: Tensor, X: np.ndarray) -> np.ndarray:
    """What ggml computes for X @ W.T: the dequantized weights times the quantized activations (in f64),
    plus, for Q8_1, each weight block's min times (s - sum of the block's activations)."""
    w = WeightMatrix(t)
    acts = quantize(X, w.vec_dot_type)
    want = acts.f32().astype(np.float64) @ _reference(t).astype(np.float64).T
    if w.vec_dot_type == GGMLType.Q8_1:
        want += acts.q8_1_correction().astype(np.float64) @ w._block_mins().astype(np.float64).T
    return want


@pytest.mark.parametrize("qtype", QUANT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_out", [67, 64])  # 64: ggml's repacked 8-row kernels (Q4_0, Q4_K, Q2_K, IQ4_NL, MXFP4)
def test_vec_dot_kernels_compute_ggml_s_products(qtype, n_out):
    # 3 super-blocks; 25 blocks of 32 (IQ4_NL / MXFP4 pair their blocks: an odd last one); 67 rows: not a
    # multiple of the chunk
    n_in = 800 if BLOCK_LAYOUT[qtype][0] == 32 else 768
    t = synthetic(qtype, n_out, n_in, seed=2)
    w = WeightMatrix(t)
    rng = np.random.default_rng(4)
    for T in (1, 2, 4, 5, 9, 40):  # one row, the 4-row kernel and its remainder, the BLAS path
        X = rng.standard_normal((T, n_in)).astype(np.float32)
        want = _ggml_product(t, X)
        got = w.mul(X)
        assert got.shape == (T, n_out) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (qtype, T)


def test_activations_are_quantized_once_per_type():
    X = np.random.default_rng(13).standard_normal((3, 256)).astype(np.float32)
    acts = Activations(X)
    assert acts.quantized(GGMLType.Q8_K) is acts.quantized(GGMLType.Q8_K)
    a = WeightMatrix(synthetic(GGMLType.Q4_K, 8, 256))
    b = WeightMatrix(synthetic(GGMLType.Q6_K, 8, 256, seed=1))
    np.testing.assert_array_equal(a.mul(acts), a.mul(X))
    np.testing.assert_array_equal(b.mul(acts), b.mul(X))
    with pytest.raises(ValueError):
        a.mul(np.zeros((1, 512), np.float32))


def _fma(a, b, c):
    """float32 fma through float64: the product of two float32 is exact there."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)


def _ggml_vec_dot_f32(x, y, lanes):
    """ggml_vec_dot_f32 as vec.cpp writes it (x86: GGML_F32_ARR = 4 vectors of GGML_F32_EPR lanes)."""
    step = 4 * lanes
    n_main = len(x) - len(x) % step
    acc = np.zeros((4, lanes), np.float32)
    for i in range(0, n_main, step):
        acc = _fma(x[i:i + step].reshape(4, lanes), y[i:i + step].reshape(4, lanes), acc)
    acc[0] += acc[2]
    acc[1] += acc[3]
    v = acc[0] + acc[1]
    if lanes == 16:  # _mm512_reduce_add_ps
        v = v[:8] + v[8:]
        v = v[:4] + v[4:]
        s = (v[0] + v[2]) + (v[1] + v[3])
    else:  # lo128 + hi128, then _mm_hadd_ps twice
        t0 = v[:4] + v[4:]
        s = (t0[0] + t0[1]) + (t0[2] + t0[3])
    for i in range(n_main, len(x)):
        s = _fma(x[i], y[i], s)
    return np.float32(s)


def _tinyblas_f32(w, x, lanes):
    """tinyBLAS's gemm_bloc for one output: one vector accumulator of madd, then hsum (halving)."""
    acc = np.zeros(lanes, np.float32)
    for base in range(0, len(w), lanes):
        acc = _fma(w[base:base + lanes], x[base:base + lanes], acc)
    while len(acc) > 1:
        acc = acc[:len(acc) // 2] + acc[len(acc) // 2:]
    return acc[0]


@pytest.mark.parametrize("n_in", [128, 200])
def test_f32_products_take_ggml_float_order(n_in):
    """F32 weights (every MoE router) multiply as ggml does, bit for bit and whatever BLAS the host has: one row
    with ggml_vec_dot_f32, two or more with tinyBLAS (n_in a multiple of the vector width; else vec_dot)."""
    from llamacpy.kernels.floats import F32_LANES
    rng = np.random.default_rng(12)
    W = rng.standard_normal((6, n_in)).astype(np.float32)
    X = rng.standard_normal((5, n_in)).astype(np.float32)
    w = WeightMatrix(Tensor("router", GGMLType.F32, W.shape, W.view(np.uint8)))
    one = w.mul(X[:1])
    assert np.array_equal(one[0], [_ggml_vec_dot_f32(W[r], X[0], F32_LANES) for r in range(6)])
    many = w.mul(X)
    tiled = n_in % F32_LANES == 0
    want = [[(_tinyblas_f32(W[r], X[t], F32_LANES) if tiled else _ggml_vec_dot_f32(W[r], X[t], F32_LANES))
             for r in range(6)] for t in range(5)]
    assert np.array_equal(many, np.array(want, np.float32))
    assert np.array_equal(w.mul(X[1:3]), many[1:3])  # per output, the same bits for any row count >= 2
