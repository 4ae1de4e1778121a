"""llamacpy.quantize: the row quantizers against gguf-py's reference, llama.cpp's tensor rules, the file it
writes (read back with llamacpy.gguf and gguf's own reader), and the errors a user can run into."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from llamacpy.cli.main import main as cli
from llamacpy.gguf import GGMLType, GGUFFile, Tensor
from llamacpy.kernels import dequantize
from llamacpy.quantize import QuantizeError, QuantizeParams, parse_ftype, quantize, quantize_file
from llamacpy.quantize.driver import tensor_order
from llamacpy.quantize.policy import ModelFacts, TypeChooser

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def _reference(x: np.ndarray, name: str) -> np.ndarray:
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType[name])
    return ref.view(np.uint8).reshape(*x.shape[:-1], -1)


def _awkward_rows() -> np.ndarray:
    """Blocks that exercise the corner cases: zeros (signed), ties of +-max, halves, tiny and huge values."""
    rng = np.random.default_rng(7)
    rows = [np.zeros(64), -np.zeros(64), np.tile([2.0, -2.0], 32), np.tile([-2.0, 2.0], 32),
            np.arange(64) / 2 - 16, np.full(64, 1e-30), rng.standard_normal(64) * 1e4,
            rng.standard_normal(64) * 1e-6, np.r_[np.zeros(31), 1.0, np.zeros(31), -1.0],
            rng.integers(-127, 128, 64) / 127 * 0.5,
            np.r_[127.0, np.arange(31) - 15.5, -127.0, np.arange(31) - 14.5]]  # Q8_0 d = 1: exact halves
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("name", TYPES)
def test_rows_bit_exact_with_gguf_py(name):
    rng = np.random.default_rng(0)
    for x in (_awkward_rows(), rng.standard_normal((37, 256)).astype(np.float32),
              (rng.standard_t(3, (8, 1024)) * 0.02).astype(np.float32)):
        ours, ref = quantize(x, GGMLType[name]), _reference(x, name)
        if name in ("Q4_0", "Q5_0") and x is not None and x.shape == (11, 64):
            # a block of -0.0: ggml writes d = -0.0 (0x8000) where gguf-py writes +0.0 (test_kquantizers checks
            # ggml's own bytes)
            assert ours[1, 1] == 0x80 and ref[1, 1] == 0
            ours, ref = np.delete(ours, 1, 0), np.delete(ref, 1, 0)
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.slow
@pytest.mark.parametrize("name", TYPES)
def test_rows_bit_exact_on_real_tensors(name, minilm_path, smollm2_path):
    for path, tensors in ((minilm_path, ["token_embd.weight", "blk.2.ffn_down.weight", "blk.5.attn_v.weight"]),
                          (smollm2_path, ["blk.0.ffn_gate.weight", "blk.29.attn_output.weight"])):
        g = GGUFFile(path)
        for t in tensors:
            x = dequantize(g.tensors[t])
            np.testing.assert_array_equal(quantize(x, GGMLType[name]), _reference(x, name), err_msg=t)


def test_thread_count_does_not_change_bytes():
    import numba

    x = np.random.default_rng(1).standard_normal((64, 512)).astype(np.float32)
    numba.set_num_threads(1)
    one = quantize(x, GGMLType.Q4_1)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    np.testing.assert_array_equal(quantize(x, GGMLType.Q4_1), one)


def test_ftype_names_and_numbers():
    assert parse_ftype("q8_0").ftype == 7 and parse_ftype("Q4_K_M").ftype == 15
    assert parse_ftype("7").name == "Q8_0" and parse_ftype("0").name == "F32"  # not COPY
    assert parse_ftype("COPY").name == "COPY" and parse_ftype("q9_0") is None and parse_ftype("out.gguf") is None


def _chooser(ftype: int, names: list[str], **kw) -> tuple[TypeChooser, list[str]]:
    warnings: list[str] = []
    default = {7: GGMLType.Q8_0, 2: GGMLType.Q4_0, 1: GGMLType.F16}[ftype]
    return TypeChooser(QuantizeParams(ftype=ftype, **kw), default, ModelFacts(), names, warnings.append), warnings


def test_llama_cpp_tensor_rules():
    names = ["token_embd.weight", "output.weight", "output_norm.weight", "blk.0.attn_q.weight",
             "blk.0.attn_q.bias", "blk.0.ffn_gate_inp.weight", "position_embd.weight"]
    c, _ = _chooser(2, names)
    f16, f32 = GGMLType.F16, GGMLType.F32
    assert c.choose("blk.0.attn_q.weight", f16, (4096, 4096)) == GGMLType.Q4_0
    assert c.choose("output.weight", f16, (4096, 32000)) == GGMLType.Q6_K  # the output gets more bits
    assert c.choose("token_embd.weight", f16, (4096, 32000)) == GGMLType.Q4_0  # not tied: output.weight exists
    assert c.choose("output_norm.weight", f32, (4096, 1)) == f32
    assert c.choose("blk.0.attn_q.bias", f32, (4096,)) == f32
    assert c.choose("blk.0.ffn_gate_inp.weight", f32, (4096, 8)) == f32
    assert c.choose("position_embd.weight", f32, (4096, 512)) == f32
    tied, warnings = _chooser(2, ["token_embd.weight", "blk.0.attn_q.weight"])
    assert tied.choose("token_embd.weight", f16, (4096, 32000)) == GGMLType.Q6_K
    assert tied.choose("token_embd.weight", f16, (576, 49152)) == GGMLType.Q8_0  # 576 % 256: as smollm2 has it
    assert warnings[0].endswith("(required for type    q6_K) -> falling back to    q8_0")
    assert tied.choose("blk.0.attn_q.weight", f16, (48, 64)) == GGMLType.F16 and tied.n_fallback == 2
    assert "ncols     48 not divisible by  32 (required for type    q4_0)" in warnings[1]
    assert warnings[1].endswith("(WARNING: must use F16 due to unusual shape) -> falling back to     f16")


def test_rule_options():
    names = ["token_embd.weight", "output.weight", "blk.0.ffn_up.weight"]
    leave, _ = _chooser(2, names, quantize_output_tensor=False)
    assert leave.choose("output.weight", GGMLType.F16, (4096, 32000)) == GGMLType.F16
    pure, _ = _chooser(2, names, pure=True)
    assert pure.choose("output.weight", GGMLType.F16, (4096, 32000)) == GGMLType.Q4_0
    typed, _ = _chooser(2, names, output_tensor_type=GGMLType.Q8_0, token_embedding_type=GGMLType.Q5_1,
                        tensor_types=[("ffn_up", GGMLType.Q5_0)])
    assert typed.choose("output.weight", GGMLType.F16, (4096, 32000)) == GGMLType.Q8_0
    assert typed.choose("token_embd.weight", GGMLType.F16, (4096, 32000)) == GGMLType.Q5_1
    assert typed.choose("blk.0.ffn_up.weight", GGMLType.F16, (4096, 11008)) == GGMLType.Q5_0
    f16, _ = _chooser(1, names)  # float targets: no mixture, no fallback
    assert f16.choose("output.weight", GGMLType.F32, (100, 32000)) == GGMLType.F16


def test_tensor_order_is_llama_cpps():
    names = ["blk.10.attn_q.weight", "blk.2.ffn_up.weight", "token_embd.weight", "blk.2.attn_k.weight",
             "output_norm.weight"]
    assert tensor_order(names) == ["output_norm.weight", "token_embd.weight", "blk.2.attn_k.weight",
                                   "blk.2.ffn_up.weight", "blk.10.attn_q.weight"]


@pytest.fixture
def tiny_f32(tmp_path):
    """A small llama-shaped F32 GGUF written by gguf's GGUFWriter (alignment 64, a string array, odd shapes)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "tiny-f32.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint32("general.alignment", 64)
    w.add_block_count(1)
    w.add_token_list(["<s>", "a", "b\u00e9", ""])
    w.add_int32("custom.signed", -5)
    w.add_file_type(0)
    tensors = {"token_embd.weight": (4, 64), "output_norm.weight": (64,), "blk.0.attn_q.weight": (64, 64),
               "blk.0.attn_q.bias": (64,), "blk.0.ffn_up.weight": (96, 64), "blk.0.ffn_down.weight": (64, 48)}
    for name, shape in tensors.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("name", TYPES + ["F32"])
def test_quantized_file(tiny_f32, tmp_path, name):
    out = tmp_path / f"tiny-{name}.gguf"
    opt = parse_ftype(name)
    res = quantize_file(tiny_f32, out, QuantizeParams(ftype=opt.ftype, nthread=2), log=lambda *a, **k: None)
    src, dst = GGUFFile(tiny_f32), GGUFFile(out)
    assert dst.metadata["general.file_type"] == opt.ftype and dst.metadata["general.quantization_version"] == 2
    assert list(dst.metadata)[-2:] == ["general.quantization_version", "general.file_type"]
    for key in ("tokenizer.ggml.tokens", "custom.signed", "general.alignment", "llama.block_count"):
        assert dst.raw_kv(key) == src.raw_kv(key)  # same bytes: same value type too
    assert dst.data_offset % 64 == 0
    target = GGMLType[name]
    expect = {"output_norm.weight": GGMLType.F32, "blk.0.attn_q.bias": GGMLType.F32,
              "blk.0.ffn_down.weight": target if name in ("F16", "BF16", "F32") else GGMLType.F16,  # 48 columns
              "token_embd.weight": GGMLType.Q8_0 if name.startswith("Q") else target,  # tied, 64 % 256
              "blk.0.attn_q.weight": target, "blk.0.ffn_up.weight": target}
    assert {n: t.type for n, t in dst.tensors.items()} == expect
    for n, t in dst.tensors.items():
        x = dequantize(src.tensors[n])
        want = _reference(x, t.type.name) if t.type != GGMLType.F32 else x.view(np.uint8)
        np.testing.assert_array_equal(t.data.reshape(want.shape), want, err_msg=n)
    r = gguf.GGUFReader(out)  # gguf's own reader agrees on the layout
    assert {t.name: int(t.tensor_type) for t in r.tensors} == {n: int(t) for n, t in expect.items()}
    assert res.n_tensors == 6 and res.size_out == sum(t.data.nbytes for t in dst.tensors.values())


def test_copy_keeps_types_and_file_type(tiny_f32, tmp_path):
    out = tmp_path / "copy.gguf"
    assert cli(["quantize", str(tiny_f32), str(out), "COPY"]) == 0
    src, dst = GGUFFile(tiny_f32), GGUFFile(out)
    assert dst.metadata["general.file_type"] == 0
    for n, t in src.tensors.items():
        assert dst.tensors[n].type == t.type and np.array_equal(dst.tensors[n].data, t.data)


def test_dry_run_writes_nothing(tiny_f32, tmp_path, capsys):
    assert cli(["quantize", "--dry-run", str(tiny_f32), "q4_0"]) == 0
    err = capsys.readouterr().err
    assert "blk.0.attn_q.weight" in err and "(q4_0)" in err and "quant size" in err
    assert not list(tmp_path.glob("ggml-model-*"))


def test_default_output_name(tiny_f32, tmp_path, capsys):
    assert cli(["quantize", str(tiny_f32), "Q8_0", "1"]) == 0
    assert GGUFFile(tmp_path / "ggml-model-Q8_0.gguf").metadata["general.file_type"] == 7
    out = capsys.readouterr()
    assert "converting to q8_0 .. size =" in out.err and "main: quantize time =" in out.out


@pytest.mark.parametrize("args, message", [
    (["Q9_9"], "invalid ftype 'Q9_9'; supported: Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q2_K_S, Q3_K, Q3_K_S, Q3_K_M"),
    (["OUT", "Q9_9"], "invalid ftype 'Q9_9'"),
    (["IQ2_XXS"], "IQ2_XXS is not supported by llamacpy yet; supported: Q4_0"),
    (["out.gguf", "q8_0", "two"], "invalid nthread 'two'"),
])
def test_bad_arguments(tiny_f32, args, message, capsys):
    assert cli(["quantize", str(tiny_f32), *args]) == 1
    assert message in capsys.readouterr().err


def test_input_errors(tiny_f32, tmp_path, capsys):
    assert cli(["quantize", str(tiny_f32), str(tiny_f32), "q8_0"]) == 1
    assert "input and output files are the same" in capsys.readouterr().err
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all, just text")
    assert cli(["quantize", str(junk), str(tmp_path / "o.gguf"), "q8_0"]) == 1
    assert "not a GGUF file" in capsys.readouterr().err
    assert cli(["quantize", str(tmp_path / "missing.gguf"), str(tmp_path / "o.gguf"), "q8_0"]) == 1
    assert "cannot open" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()


def test_requantize_needs_the_flag(tiny_f32, tmp_path, capsys):
    q8 = tmp_path / "q8.gguf"
    assert cli(["quantize", str(tiny_f32), str(q8), "q8_0"]) == 0
    out = tmp_path / "q4.gguf"
    assert cli(["quantize", str(q8), str(out), "q4_0"]) == 1
    assert "requantizing from type q8_0 is disabled" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("q4.gguf.*"))  # nothing half-written
    assert cli(["quantize", "--allow-requantize", str(q8), str(out), "q4_0"]) == 0
    src, dst = GGUFFile(q8), GGUFFile(out)
    x = dequantize(src.tensors["blk.0.attn_q.weight"])  # requantized from the dequantized Q8_0, as llama.cpp
    np.testing.assert_array_equal(dst.tensors["blk.0.attn_q.weight"].data, _reference(x, "Q4_0"))
    assert dst.tensors["token_embd.weight"].type == GGMLType.Q8_0  # already the target: copied


def test_unsupported_target_type_is_named(tiny_f32, tmp_path):
    p = QuantizeParams(ftype=7, output_tensor_type=GGMLType.IQ2_XXS, token_embedding_type=GGMLType.IQ2_XXS)
    with pytest.raises(QuantizeError, match="cannot quantize to iq2_xxs yet.*tensor types it can write: f32, f16"):
        quantize_file(tiny_f32, tmp_path / "o.gguf", p, log=lambda *a, **k: None)


@pytest.mark.parametrize("qtype", [GGMLType.IQ4_NL, GGMLType.IQ4_XS], ids=lambda t: t.name)
def test_iq4_quantizers_round_trip(qtype):
    # (byte equality with llama-quantize is checked on a real model: tests/e2e/test_quantize_models.py)
    x = np.random.default_rng(5).standard_normal((16, 512)).astype(np.float32)
    x[3] = 0.0  # an empty row: scale 0, codes of the value nearest 0
    x[4, :32] = 0.0  # an empty sub-block beside full ones
    q = quantize(x, qtype)
    assert q.shape == (16, 512 // 32 * 18 if qtype == GGMLType.IQ4_NL else 2 * 136)
    y = dequantize(Tensor("q", qtype, x.shape, q))
    assert np.array_equal(y[3], x[3]) and np.array_equal(y[4, :32], x[4, :32])
    err = np.linalg.norm(y - x) / np.linalg.norm(x)
    assert err < 0.12, err  # 4.25-4.5 bits per weight on Gaussian rows (measured ~0.09)
