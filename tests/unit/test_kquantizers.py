"""The row quantizers against ggml's own: every type llama-quantize writes, with and without an importance matrix,
byte for byte on recorded inputs (scripts/record_ggml_quantize.py ran ggml_quantize_chunk of llama.cpp 0c1e570)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from llamacpy.gguf import GGMLType
from llamacpy.kernels.quantizers import quantize

DATA = Path(__file__).resolve().parent.parent / "data/ggml_quantize"
RECORD = json.loads((DATA / "expected.json").read_text())
INPUTS = dict(np.load(DATA / "inputs.npz"))


def test_inputs_are_the_recorded_ones():
    assert hashlib.sha256((DATA / "inputs.npz").read_bytes()).hexdigest() == RECORD["inputs_sha256"]


@pytest.mark.parametrize("key", sorted(RECORD["outputs_sha256"]))
def test_bytes_equal_ggml_quantize_chunk(key):
    tname, case, mode = key.split("/")
    qw = INPUTS[case + ".imatrix"] if mode == "imatrix" else None
    out = quantize(INPUTS[case], GGMLType[tname], imatrix=qw)
    assert hashlib.sha256(out.tobytes()).hexdigest() == RECORD["outputs_sha256"][key]


def test_importance_changes_the_choice():
    """The weighted path is taken: with an imatrix that favours some columns, their error drops."""
    import gguf

    x = INPUTS["normal"]
    qw = np.ones(x.shape[1], np.float32)
    qw[:64] = 100.0
    for t in ("Q4_K", "Q3_K", "Q2_K"):
        err = [np.abs(gguf.quants.dequantize(quantize(x, GGMLType[t], imatrix=w), gguf.GGMLQuantizationType[t])
                      - x)[:, :64].mean() for w in (None, qw)]
        assert err[1] < err[0], t


def test_imatrix_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="importance matrix of 7 values"):
        quantize(INPUTS["normal"], GGMLType.Q4_K, imatrix=np.ones(7, np.float32))
