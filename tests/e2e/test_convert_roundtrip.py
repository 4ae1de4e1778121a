"""`llamacpy convert` on Hugging Face folders made from GGUF files by scripts/export_hf.py (no hub needed).

Every folder llama.cpp's own convert_hf_to_gguf.py was run on (scripts/record_llama_convert.py, recordings in
tests/data/llama_convert/) must convert to the same bytes as it did, the folder first checked to be the one
recorded. Beyond that, tiny random models of every family the converter handles are exported in f32 and converted back to Q8_0: the
tensors must come back byte for byte (Q8_0 of a dequantized Q8_0 is the same blocks), the metadata must be
the same but for the keys llama.cpp's converter does not write (each listed with why llama.cpp reads the same
value without it), and the converted model must give the same logits. The catalog models are exported the way
Hugging Face ships them (BF16) with their real tokenizers: the vocabulary, merges, scores, special tokens and
chat template must come back exactly (which also proves the pre-tokenizer hash matched llama.cpp's table), the
weights within BF16's rounding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinykit import script

from llamacpy.catalog import file_sha256
from llamacpy.convert import ConvertError, convert_hf
from llamacpy.gguf.reader import GGUFFile
from llamacpy.kernels.weight import dequantize

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "scripts" / "export_hf.py"
RECORDINGS = ROOT / "tests" / "data" / "llama_convert"
# llamacpy writes gemma 3's layer pattern where it is not llama.cpp's default of 6 (llama.cpp reads the key;
# its converter leaves it out, so its file of a pattern-3 model runs as pattern 6)
BEYOND_LLAMA_CPP = {"tiny-gemma3": ["gemma3.attention.sliding_window_pattern"]}

# keys a tiny model has that the converter leaves out, because llama.cpp's default is that value
DEFAULTED = {
    "attention.key_length": "n_embd / n_head when config.json has no head_dim",
    "attention.value_length": "n_embd / n_head when config.json has no head_dim",
    "rope.dimension_count": "the head size (qwen3, gemma and phi3 converters leave it out)",
    "vocab_size": "the token count (only llama's converter writes it)",
    "rope.freq_base": "10000 (gemma2's converter never writes it)",
    "expert_feed_forward_length": "feed_forward_length (Mixtral's converter writes only that; they are equal)",
}
# keys the converter adds: (key, value) as llama.cpp's converter writes them from the exported config
ADDED = {"phi3": {"attention.sliding_window": 0, "rope.scaling.original_context_length": 2048}}
ADDED_ANY = {"tokenizer.ggml.add_eos_token": False}  # a ByteLevel post-processor: no EOS (BPE's default too)
ALWAYS_DIFFERENT = {"general.name", "general.size_label", "general.file_type", "general.type",
                    "general.quantization_version", "tokenizer.ggml.add_space_prefix"}  # the last: BPE ignores it

FAMILIES = {  # tiny model -> (export flags, HF architecture written)
    "llama": ([], "LlamaForCausalLM"), "mistral": (["--mistral"], "MistralForCausalLM"),
    "qwen3": ([], "Qwen3ForCausalLM"), "gemma2": ([], "Gemma2ForCausalLM"), "gemma3": ([], "Gemma3ForCausalLM"),
    "phi3": ([], "Phi3ForCausalLM"), "phi3-longrope": ([], "Phi3ForCausalLM"),
    "mixtral": ([], "MixtralForCausalLM"), "qwen2moe": ([], "Qwen2MoeForCausalLM"),
    "qwen3moe": ([], "Qwen3MoeForCausalLM"),
}


def export(gguf: Path, out: Path, *flags: str) -> Path:
    subprocess.run([sys.executable, str(EXPORT), str(gguf), str(out), *flags], check=True, capture_output=True)
    return out


def recording(case: str) -> dict:
    return json.loads((RECORDINGS / f"{case}.json").read_text())


def assert_same_as_llama_cpp(case: str, folder: Path, out: Path) -> None:
    """The exported folder is the recorded one, and our file is llama.cpp's converter's, byte for byte."""
    rec = recording(case)
    assert script("record_llama_convert").folder_hashes(folder) == rec["input_sha256"], \
        "scripts/export_hf.py no longer writes the recorded folder: rerun scripts/record_llama_convert.py"
    g = GGUFFile(out)
    assert {n: t.type.name.lower() for n, t in g.tensors.items()} == rec["tensor_types"]
    if case in BEYOND_LLAMA_CPP:
        assert [k for k in g.metadata if k not in BEYOND_LLAMA_CPP[case]] == rec["metadata_keys"]
    else:
        assert list(g.metadata) == rec["metadata_keys"]
        assert file_sha256(out) == rec["sha256"], f"{case}: not llama.cpp's converter's bytes"


def metadata_diff(a: GGUFFile, b: GGUFFile) -> dict[str, tuple]:
    out = {}
    for k in set(a.metadata) | set(b.metadata):
        va, vb = a.metadata.get(k), b.metadata.get(k)
        if isinstance(va, (list, np.ndarray)) or isinstance(vb, (list, np.ndarray)):
            same = va is not None and vb is not None and len(va) == len(vb) and list(va) == list(vb)
        else:
            same = va == vb
        if not same and k not in ALWAYS_DIFFERENT:
            out[k] = (va, vb)
    return out


def logits(path: Path, tokens: list[int]) -> np.ndarray:
    from llamacpy.api import Llama

    return np.asarray(Llama(path, n_ctx=64, n_threads=1).eval_logits(tokens))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tiny_family_round_trips(name, tiny_model, tmp_path):
    flags, hf_arch = FAMILIES[name]
    original = tiny_model("llama" if name == "mistral" else name)
    folder = export(original, tmp_path / f"tiny-{name}", "--dtype", "f32", *flags)
    assert json.loads((folder / "config.json").read_text())["architectures"] == [hf_arch]
    out = convert_hf(folder, tmp_path / "back.gguf", "q8_0", progress=lambda _m: None)
    if name != "gemma2":  # llama.cpp's converter wants a tokenizer.model for gemma 2
        assert_same_as_llama_cpp(f"tiny-{name}", folder, out)
    a, b = GGUFFile(original), GGUFFile(out)

    assert a.architecture == b.architecture
    assert sorted(a.tensors) == sorted(b.tensors)
    for t in a.tensors.values():
        u = b.tensors[t.name]
        if t.name.endswith("ffn_gate_inp_shexp.weight"):  # HF's (1, n_embd) Linear stays 2-D, as upstream
            assert u.shape == (1, *t.shape)
            u = type(u)(u.name, u.type, t.shape, u.data.reshape(t.data.shape))
        assert (u.type, u.shape) == (t.type, t.shape), t.name
        assert np.array_equal(u.data, t.data), f"{t.name}: the bytes differ"

    arch = a.architecture
    added = ADDED.get(arch, {})
    for key, (va, vb) in metadata_diff(a, b).items():
        short = key.removeprefix(f"{arch}.")
        if vb is None:
            assert short in DEFAULTED, f"{key}={va!r} was lost"
        elif va is None:
            assert {**ADDED_ANY, **added}.get(short) == vb, f"{key}={vb!r} was added"
        else:  # phi3-longrope's attention factor: HF computes it from the context lengths
            assert name == "phi3-longrope" and short == "rope.scaling.attn_factor", f"{key}: {va!r} -> {vb!r}"
            assert vb == pytest.approx(np.sqrt(1 + np.log(2048 / 256) / np.log(256)), rel=1e-6)
    if name != "phi3-longrope":  # same tensors, equivalent metadata: the same model
        ids = [1, 504, 3458, 314, 253, 1355, 28, 2020]
        np.testing.assert_array_equal(logits(original, ids), logits(out, ids))


def _bf16_close(x: np.ndarray, y: np.ndarray) -> bool:
    """y is x rounded to BF16 then to F16: within BF16's half-ulp plus F16's, relative, and F16's subnormals."""
    return bool(np.all(np.abs(y - x) <= (2.0 ** -8 + 2.0 ** -11) * np.abs(x) + 2.0 ** -24))


@pytest.mark.parametrize(("case", "source", "outtype"), [("tiny-llama-f16", "llama", "f16"),
                                                          ("tiny-qwen3-bf16", "qwen3", "bf16")])
def test_other_dtypes_match_llama_cpp(case, source, outtype, tiny_model, tmp_path):
    """F16 and BF16 checkpoints, to F16 and BF16 files (gguf-py's BF16 rounding)."""
    folder = export(tiny_model(source), tmp_path / case, "--dtype", outtype)
    out = convert_hf(folder, tmp_path / "out.gguf", outtype, progress=lambda _m: None)
    assert_same_as_llama_cpp(case, folder, out)


@pytest.mark.parametrize(("case", "source"), [("tiny-llama3-rope", "llama"), ("tiny-qwen3-yarn", "qwen3")])
def test_rope_scaling_configs_match_llama_cpp(case, source, tiny_model, tmp_path):
    """llama 3's rope factors (a made rope_freqs tensor) and YaRN keys, from config.json's rope_scaling."""
    recorder = script("record_llama_convert")
    folder = export(tiny_model(source), tmp_path / case, "--dtype", "f32")
    recorder.edit_config(folder, recorder.CONFIG[case])
    out = convert_hf(folder, tmp_path / "out.gguf", "q8_0", progress=lambda _m: None)
    assert_same_as_llama_cpp(case, folder, out)
    assert ("rope_freqs.weight" in GGUFFile(out).tensors) == (case == "tiny-llama3-rope")


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "case"), [("smollm2_path", "smollm2"), ("qwen05_path", "qwen05"),
                                               ("gemma_path", "gemma3-270m")])
def test_catalog_model_round_trips_from_bf16(fixture, case, request, tmp_path):
    original = request.getfixturevalue(fixture)
    folder = export(original, tmp_path / case)
    out = convert_hf(folder, tmp_path / "back.gguf", "f16", progress=lambda _m: None)
    assert_same_as_llama_cpp(case, folder, out)
    a, b = GGUFFile(original), GGUFFile(out)
    diff = metadata_diff(a, b)
    # the catalog files came from older converters; 0c1e570's adds keys, with the values llama.cpp assumed
    # without them: head_dim (transformers' default), no EOS (a ByteLevel post-processor), gemma 3's local base
    newer = {f"{a.architecture}.attention.key_length", f"{a.architecture}.attention.value_length",
             "tokenizer.ggml.add_eos_token", "gemma3.rope.freq_base_swa"}
    assert {k: v for k, v in diff.items() if not (k in newer and v[0] is None)} == {}
    assert a.get("tokenizer.ggml.pre") == b.get("tokenizer.ggml.pre")
    assert sorted(a.tensors) == sorted(b.tensors)
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.ffn_down.weight",
                 "blk.0.attn_norm.weight", "output_norm.weight"):
        x, y = dequantize(a.tensors[name]), dequantize(b.tensors[name])
        assert x.shape == y.shape and _bf16_close(x, y), name


def test_bf16_output_and_shards(tiny_model, tmp_path):
    """A sharded BF16 checkpoint (index + two files) converts to BF16 GGUF tensors holding the same bits."""
    from llamacpy.convert import safetensors

    folder = export(tiny_model("qwen3"), tmp_path / "hf", "--dtype", "bf16")
    whole = safetensors.Safetensors([folder / "model.safetensors"])
    names = whole.names()
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, part in halves.items():
        safetensors.write(folder / file, {n: whole.float32(n) for n in part}, "BF16")
    q_bits = whole.read("model.layers.0.self_attn.q_proj.weight")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: file for file, part in halves.items() for n in part}}))
    out = GGUFFile(convert_hf(folder, tmp_path / "bf16.gguf", "bf16", progress=lambda _m: None))
    t = out.tensors["blk.0.attn_q.weight"]
    assert t.type.name == "BF16" and out.metadata["general.file_type"] == 32
    assert np.array_equal(t.data.view(np.uint16).reshape(t.shape), q_bits)
    assert out.tensors["blk.0.attn_q_norm.weight"].type.name == "F32"


def test_bad_checkpoints_are_clear_errors(tiny_model, tmp_path):
    folder = export(tiny_model("llama"), tmp_path / "hf", "--dtype", "f16")
    raw = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(ConvertError, match="does not fit"):
        convert_hf(folder, tmp_path / "x.gguf", progress=lambda _m: None)
    (folder / "model.safetensors").write_bytes(raw)
    tj = json.loads((folder / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Whitespace"}  # a pre-tokenizer llama.cpp does not know
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ConvertError, match="pre-tokenizer was not recognized"):
        convert_hf(folder, tmp_path / "x.gguf", progress=lambda _m: None)
    assert not list(tmp_path.glob("x.gguf*"))


def test_cli_convert_a_decoder(tiny_model, tmp_path):
    """convert_hf_to_gguf.py's command line: --outtype auto takes the checkpoint's BF16, the file is named
    in the model's folder as llama.cpp names it, --vocab-only and --dry-run, refused flags."""
    folder = export(tiny_model("gemma3"), tmp_path / "hf", "--dtype", "bf16")
    cmd = [sys.executable, "-m", "llamacpy", "convert", str(folder)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = Path(r.stdout.strip())
    assert out.parent == folder and out.name.endswith("-BF16.gguf") and out.is_file()
    assert "--outtype auto: bf16" in r.stderr and "gemma3, 4 layers" in r.stderr and "wrote" in r.stderr
    g = GGUFFile(out)
    assert g.metadata["general.file_type"] == 32 and g.tensors["blk.0.attn_q.weight"].type.name == "BF16"

    r = subprocess.run([*cmd, "--vocab-only", "--outfile", str(tmp_path / "v-{ftype}.gguf")], capture_output=True,
                       text=True, check=True)
    v = GGUFFile(r.stdout.strip())
    assert Path(r.stdout.strip()).name == "v-bf16.gguf" and not v.tensors
    assert v.metadata["tokenizer.ggml.tokens"] == g.metadata["tokenizer.ggml.tokens"]

    r = subprocess.run([*cmd, "--dry-run", "--model-name", "Tiny Thing"], capture_output=True, text=True, check=True)
    assert "(dry run) blk.0.attn_q.weight" in r.stderr and "Tiny-Thing" in r.stdout
    assert not Path(r.stdout.strip()).exists()
    r = subprocess.run([*cmd, "--split-max-size", "1G"], capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "split output is not written" in r.stderr


@pytest.mark.slow
def test_bert_matches_llama_cpp(minilm_hf, minilm_path, tmp_path):
    """all-MiniLM-L6-v2's own folder: the WordPiece vocabulary named jina-v2-en by its hash, as llama.cpp."""
    out = convert_hf(minilm_hf, tmp_path / "minilm.gguf", "f16", progress=lambda _m: None)
    assert_same_as_llama_cpp("minilm", minilm_hf, out)
    assert GGUFFile(out).metadata["tokenizer.ggml.pre"] == "jina-v2-en"
    assert file_sha256(minilm_path) == recording("minilm")["sha256"]  # `pull` converts the same folder
