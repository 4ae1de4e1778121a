#!/usr/bin/env python3
"""Record llama.cpp's intermediate tensors of layers 0-1 with `llama-eval-callback`, for the host's instruction set
(tests/data/llama_cpp_layers_avx2/ on a machine without AVX-512; record_llama_cpp_layers.py made the AVX-512 ones).

ggml's float summation order depends on the SIMD width it was built for (its f16 dot products, ggml_v_expf), and
llamacpy follows the host's (kernels/simd.py HAS_AVX512), so each instruction set gets its own recording. The
prompt tokens and the tensor names come from the AVX-512 recording of the same model.

    cd <llama.cpp 0c1e570> && patch -p1 < scripts/llama_cpp_eval_dump.patch   # token ids in, raw tensors out
    cmake --build build-noamx --target llama-eval-callback
    LLAMA_EVAL_CALLBACK=<bin>/llama-eval-callback python3 scripts/record_llama_cpp_layers_dump.py \\
        MODEL.gguf tests/data/llama_cpp_layers/NAME.npz tests/data/llama_cpp_layers_avx2/NAME.npz

The patch (two environment variables, off by default) makes llama-eval-callback read the prompt as token ids
(LCPP_TOKENS) and write every contiguous f32 tensor it sees to a folder (LCPP_DUMP), the last write of a name
winning (for Qcur/Kcur: the roped tensor, as the traces here). Runs with 2 threads and flash attention on
(llama-server's default on CPU).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMMIT = "0c1e570"


def main(model: str, reference: str, out: str) -> int:
    ref = np.load(reference)
    tokens = [int(t) for t in ref["tokens"]]
    names = [k for k in ref.files if k != "tokens"]
    with tempfile.TemporaryDirectory() as dump:
        env = {**os.environ, "LCPP_DUMP": dump, "LCPP_TOKENS": ",".join(map(str, tokens))}
        cmd = [os.environ["LLAMA_EVAL_CALLBACK"], "-m", model, "-p", "x", "-t", "2", "-c", "64", "-fa", "on"]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = {}
        for name in names:
            path = Path(dump) / f"{name}.f32"
            if not path.exists():
                raise SystemExit(f"llama.cpp wrote no {name}: is llama-eval-callback built with the patch?")
            got[name] = np.fromfile(path, np.float32).reshape(ref[name].shape)
    sha = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    np.savez_compressed(out, tokens=np.asarray(tokens, np.int64), **got,
                        about=np.array(f"llama.cpp {COMMIT}, llama-eval-callback (scripts/llama_cpp_eval_dump.patch), "
                                       f"AVX2 host, 2 threads, -fa on; model sha256 {sha}"))
    print(out, len(got), "tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
