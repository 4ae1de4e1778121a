"""`llamacpy quantize` to K-quants and IQ4 against llama-quantize's files: the same bytes, with and without an
importance matrix (recorded by scripts/record_llama_quantize.py with llama.cpp 0c1e570)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llamacpy.catalog import file_sha256
from llamacpy.cli.main import main as cli
from llamacpy.gguf import GGUFFile
from llamacpy.quantize.ftypes import type_name

DATA = Path(__file__).resolve().parent.parent / "data/llama_quantize"
RECORDS = {p.stem: json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))}
FIXTURES = {"smollm2": "smollm2_path", "qwen05": "qwen05_path", "gemma3": "gemma_path"}


@pytest.fixture(scope="module")
def f16(request, tmp_path_factory):
    """Each model as F16, made by llamacpy as the recorder made it with llama-quantize (checked: same file)."""
    made = {}

    def get(short: str) -> Path:
        if short not in made:
            out = tmp_path_factory.mktemp(short) / "f16.gguf"
            model = request.getfixturevalue(FIXTURES[short])
            assert cli(["quantize", "--allow-requantize", str(model), str(out), "F16"]) == 0
            assert file_sha256(out) == RECORDS[short]["f16_sha256"], "the F16 file differs from llama-quantize's"
            made[short] = out
        return made[short]

    return get


def _check(out: Path, want: dict) -> None:
    if file_sha256(out) != want["sha256"]:
        g = GGUFFile(out)
        types = {n: type_name(t.type) for n, t in g.tensors.items()}
        wrong = {n: (types.get(n), t) for n, t in want["types"].items() if types.get(n) != t}
        pytest.fail(f"bytes differ from llama-quantize's; tensor types (ours, llama.cpp) that differ: {wrong}")


CASES = [(short, ft) for short, rec in RECORDS.items() for ft in rec["files"]]


@pytest.mark.slow
@pytest.mark.parametrize(("short", "ftype"), CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_same_file_as_llama_quantize(short, ftype, f16, tmp_path, capsys):
    out = tmp_path / "out.gguf"
    assert cli(["quantize", str(f16(short)), str(out), ftype, "2"]) == 0
    _check(out, RECORDS[short]["files"][ftype])


IMATRIX_CASES = [(short, ft) for short, rec in RECORDS.items() for ft in rec.get("imatrix", {}).get("files", {})]


@pytest.mark.slow
@pytest.mark.parametrize(("short", "ftype"), IMATRIX_CASES, ids=[f"{s}-{f}" for s, f in IMATRIX_CASES])
def test_same_file_as_llama_quantize_with_imatrix(short, ftype, f16, tmp_path, monkeypatch):
    rec = RECORDS[short]["imatrix"]
    assert file_sha256(DATA / rec["file"]) == rec["sha256"]
    monkeypatch.chdir(DATA)  # the path given is written into the output (quantize.imatrix.file), as llama.cpp does
    out = tmp_path / "out.gguf"
    assert cli(["quantize", "--imatrix", rec["file"], str(f16(short)), str(out), ftype, "2"]) == 0
    _check(out, rec["files"][ftype])
    if ftype == "Q4_K_M":
        md = GGUFFile(out).metadata
        assert md["quantize.imatrix.file"] == rec["file"] and md["quantize.imatrix.chunks_count"] > 0


@pytest.mark.slow
def test_q2_k_s_needs_an_imatrix(f16, tmp_path, capsys):
    assert cli(["quantize", str(f16("smollm2")), str(tmp_path / "o.gguf"), "Q2_K_S"]) == 1
    err = capsys.readouterr().err
    assert "this quantization requires an imatrix" in err and "blk.3.ffn_down.weight" in err  # llama.cpp's first
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_imatrix_close_to_llama_imatrix(f16, tmp_path, capsys):
    """`llamacpy imatrix` with llama-imatrix's command line: the same entries, counts and chunks; the sums of
    squares within 0.5% of each entry's largest (measured 0.11%: llamacpy's activations are llama.cpp's up to
    float order), the perplexity it prints within 0.05% (measured 16.1208 vs 16.1225)."""
    from llamacpy.quantize.imatrix_file import load
    rec = RECORDS["smollm2"]["imatrix"]
    calibration = Path(rec["command"].split(" -f ")[1].split()[0])
    assert file_sha256(calibration) == rec["calibration_sha256"]
    out = tmp_path / "imatrix.gguf"
    assert cli(["imatrix", "-m", str(f16("smollm2")), "-f", str(calibration), "-c", "256", "-b", "256",
                "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    ppl = float(printed.split("Final estimate: PPL = ")[1].split()[0])
    assert abs(ppl / rec["ppl"] - 1) < 5e-4, (ppl, rec["ppl"])
    ours, ref = load(out), load(DATA / rec["file"])
    assert (ours.chunk_count, ours.chunk_size, ours.datasets) == (ref.chunk_count, ref.chunk_size, [str(calibration)])
    assert sorted(ours.sums) == sorted(ref.sums)
    for name, sums in ref.sums.items():
        assert (ours.counts[name] == ref.counts[name]).all(), name
        assert abs(ours.sums[name] - sums).max() < 5e-3 * abs(sums).max(), name


def test_imatrix_collects_experts_per_expert(tiny_model, tmp_path):
    """A mixture of experts: every 3-D expert tensor gets one row of sums and one count per expert, the counts
    adding up to tokens x experts used; the router (a dense blk. weight) one count, the tokens."""
    from llamacpy.engine.imatrix import compute_imatrix
    from llamacpy.gguf import GGUFFile as File
    from llamacpy.models import load_model
    from llamacpy.quantize.imatrix_file import load
    g = File(tiny_model("qwen2moe"))
    model = load_model(g)
    n_expert, n_used = int(g.arch_get("expert_count")), int(g.arch_get("expert_used_count"))
    tokens = list(np.random.default_rng(0).integers(1, 1000, 128))
    compute_imatrix(model, tokens, 32, tmp_path / "m.gguf", ["random"], n_chunks=2, bos_id=None)
    m = load(tmp_path / "m.gguf")
    assert m.chunk_count == 2 and m.chunk_size == 32
    for kind in ("up", "gate", "down"):
        c = m.counts[f"blk.0.ffn_{kind}_exps.weight"]
        assert c.shape == (n_expert,) and c.sum() == 64 * n_used
    assert list(m.counts["blk.0.ffn_gate_inp.weight"]) == [64]
    assert list(m.counts["blk.0.attn_q.weight"]) == [64]
    assert m.sums["blk.0.ffn_down_exps.weight"].shape[0] == n_expert


def test_imatrix_writes_the_legacy_dat_format(tmp_path, monkeypatch):
    """`--output-format dat` (save_imatrix_legacy): sorted entries, ncall = ceil(max count / chunk size), the
    mean squares times ncall; read back, the same importance as the GGUF file's."""
    from llamacpy.quantize.imatrix_file import load

    rec = RECORDS["smollm2"]["imatrix"]
    monkeypatch.chdir(DATA)
    out = tmp_path / "smol.dat"
    # -c: the chunk size ncall counts in (the file's own 256; the default 512 would halve it, as in llama.cpp)
    assert cli(["imatrix", "--in-file", rec["file"], "--output-format", "dat", "-c", "256", "-o", str(out)]) == 0
    gguf_m, dat_m = load(rec["file"]), load(out)
    assert dat_m.legacy and sorted(dat_m.sums) == sorted(gguf_m.sums)
    assert dat_m.datasets == gguf_m.datasets[-1:] and dat_m.chunk_count == 0  # combined only: no chunk run
    ncall = {n: int(c[0]) for n, c in dat_m.counts.items()}
    assert set(ncall.values()) == {gguf_m.chunk_count}  # every dense entry saw every chunk
    want, got = gguf_m.importance(), dat_m.importance()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
    raw = out.read_bytes()
    assert int.from_bytes(raw[:4], "little") == len(want)
    assert raw.endswith(gguf_m.datasets[-1].encode())


def test_imatrix_statistics_are_llama_imatrix_s(monkeypatch, capsys):
    """`--show-statistics` prints llama-imatrix's tables, character for character (recorded)."""
    rec = RECORDS["smollm2"]["imatrix"]
    monkeypatch.chdir(DATA)
    assert cli(["imatrix", "--in-file", rec["file"], "--show-statistics"]) == 0
    want = (DATA / rec["file"].replace(".gguf", ".statistics.txt")).read_text()
    assert capsys.readouterr().out == want
    assert cli(["imatrix", "--show-statistics"]) == 1  # it needs exactly one file


def test_imatrix_combines_files_as_llama_imatrix(tmp_path, monkeypatch):
    """`--in-file` twice and no text: llama-imatrix's combined file, byte for byte (sums and counts added, both
    datasets listed, the chunk count from the counts)."""
    rec = RECORDS["smollm2"]["imatrix"]
    monkeypatch.chdir(DATA)  # the dataset names are the paths as given
    out = tmp_path / "combined.gguf"
    assert cli(["imatrix", "--in-file", rec["file"], "--in-file", rec["file"], "-o", str(out)]) == 0
    assert file_sha256(out) == rec["combined"]["sha256"]
    assert cli(["imatrix", "-o", str(tmp_path / "none.gguf")]) == 1  # nothing to run, nothing to combine
