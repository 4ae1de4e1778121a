#!/usr/bin/env python3
"""Record what ggml's own quantizers write, into tests/data/ggml_quantize/ (inputs.npz + expected.json).

    LCPP_BIN=/path/to/build-noamx/bin python3 scripts/record_ggml_quantize.py

llama-quantize converts each tensor with ggml_quantize_chunk (ggml-base's ggml-quants.c); this script calls
that function of llama.cpp 0c1e570's libggml-base.so (built by shared/tools/build-llamacpp.sh) through ctypes on
fixed inputs, with and without an importance matrix, and records the sha256 of every output. The inputs are
stored beside it (awkward blocks, normal and heavy-tailed rows, and real rows: smollm2's blk.0.ffn_down from the
catalog, dequantized), so tests/unit/test_kquantizers.py compares llamacpy's kernels without llama.cpp. When a
kernel disagrees, this script prints the first differing block.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from llamacpy.gguf import GGMLType, GGUFFile
from llamacpy.kernels import dequantize
from llamacpy.kernels.quantizers import quantize, row_bytes

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/data/ggml_quantize"
COMMIT = "0c1e570"
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
REAL = CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "IQ4_XS"]


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2026)
    awkward = [np.zeros(256), -np.zeros(256), np.tile([2.0, -2.0], 128), np.arange(256) / 8 - 16,
               np.full(256, 1e-30), np.r_[np.zeros(255), 1.0], np.r_[-3.0, np.zeros(255)],
               np.abs(rng.standard_normal(256)), -np.abs(rng.standard_normal(256)),
               rng.integers(-4, 4, 256).astype(float), rng.standard_normal(256) * 1e-6, rng.standard_normal(256) * 1e4]
    g = GGUFFile(REAL)
    t = g.tensors["blk.0.ffn_down.weight"]
    real = dequantize(t)[:16]
    cases = {"awkward": np.array(awkward), "normal": rng.standard_normal((24, 512)),
             "heavy": rng.standard_t(3, (8, 1024)) * 0.02, "real": real}
    out = {}
    for name, x in cases.items():
        x = np.ascontiguousarray(x, np.float32)
        qw = rng.gamma(0.5, 1.0, x.shape[1]).astype(np.float32)
        qw[rng.integers(0, x.shape[1], x.shape[1] // 16)] = 0.0  # columns an imatrix never saw
        out[name], out[name + ".imatrix"] = x, qw
    return out


def ggml(lib, qtype: GGMLType, x: np.ndarray, qw: np.ndarray | None) -> bytes:
    out = np.zeros(x.shape[0] * row_bytes(qtype, x.shape[1]) + 64, np.uint8)
    f = ctypes.POINTER(ctypes.c_float)
    n = lib.ggml_quantize_chunk(int(qtype), x.ctypes.data_as(f), out.ctypes.data_as(ctypes.c_void_p), 0,
                                x.shape[0], x.shape[1], None if qw is None else qw.ctypes.data_as(f))
    return out[:n].tobytes()


def main() -> None:
    lib = ctypes.CDLL(str(Path(os.environ["LCPP_BIN"]) / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    data = inputs()
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "inputs.npz", **data)
    expected, bad = {}, 0
    for tname in TYPES:
        qtype = GGMLType[tname]
        for case in (k for k in data if not k.endswith(".imatrix")):
            x = data[case]
            for weighted in (False, True):
                qw = data[case + ".imatrix"] if weighted else None
                ref = ggml(lib, qtype, x, qw)
                key = f"{tname}/{case}/{'imatrix' if weighted else 'plain'}"
                expected[key] = hashlib.sha256(ref).hexdigest()
                ours = quantize(x, qtype, imatrix=qw).tobytes()
                if ours != ref:
                    bad += 1
                    a, b = np.frombuffer(ours, np.uint8), np.frombuffer(ref, np.uint8)
                    first = int(np.argmax(a != b)) if a.size == b.size else -1
                    print(f"MISMATCH {key}: first differing byte {first} (row {first // row_bytes(qtype, x.shape[1])})")
    sha = hashlib.sha256((OUT / "inputs.npz").read_bytes()).hexdigest()
    meta = {"llama_cpp_commit": COMMIT, "function": "ggml_quantize_chunk (libggml-base.so)",
            "command": "LCPP_BIN=... python3 scripts/record_ggml_quantize.py", "inputs_sha256": sha,
            "real_rows_from": f"{REAL.name} blk.0.ffn_down.weight rows 0-15", "outputs_sha256": expected}
    (OUT / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(expected)} outputs recorded, {bad} differ from llamacpy")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
