"""Seeded sampling against llama-server: every sampler configuration recorded from llama.cpp 0c1e570
(scripts/record_llama_server_sampling.py, smollm2) replayed on `llamacpy server`: the same tokens, the
same post-sampling probabilities. ggml's float order follows the host's SIMD width and so does llamacpy's
(docs/numerics.md): the recording is the host's (tests/data/llama_server_sampling on AVX-512,
llama_server_sampling_avx2 on AVX2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamacpy.kernels.simd import HAS_AVX512

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parent.parent / "data" / (
    "llama_server_sampling" if HAS_AVX512 else "llama_server_sampling_avx2")
RECORDING = json.loads((DATA / "SmolLM2-135M-Instruct.Q4_1.json").read_text())


@pytest.fixture(scope="module")
def http(start_server, smollm2_path):
    assert smollm2_path.name == RECORDING["model"]
    with start_server(smollm2_path, "-c", "2048", "-np", "1").client(timeout=120) as c:
        yield c


@pytest.mark.parametrize("name", list(RECORDING["requests"]))
def test_seeded_tokens_equal_llama_server(http, name):
    rec = RECORDING["requests"][name]
    r = http.post("/completion", json=rec["request"])
    assert r.status_code == 200, r.text
    out = r.json()
    ours, theirs = out["tokens"], rec["tokens"]
    if "grammar" in rec["request"]:
        # llama-server samples one more token once the grammar is complete (the end-of-generation token
        # the grammar then forces); llamacpy stops at the grammar's end: the text is the same
        assert theirs[len(ours):] in ([], [2])
        theirs = theirs[: len(ours)]
    assert ours == theirs
    assert out["content"] == rec["content"]
    for step, want in zip(out["completion_probabilities"], rec["probs"], strict=False):
        assert step["id"] == want["id"]
        assert step["prob"] == pytest.approx(want["prob"], abs=1e-4)
        got = [[t["id"], t["prob"]] for t in step["top_probs"]]
        assert [i for i, _ in got] == [i for i, _ in want["top"]]
        assert [p for _, p in got] == pytest.approx([p for _, p in want["top"]], abs=1e-4)
