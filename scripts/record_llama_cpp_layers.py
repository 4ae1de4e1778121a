"""Record llama.cpp's intermediate tensors of layers 0-1 for a prompt (tests/data/llama_cpp_layers/).

Needs llama-cpp-python (built from its sdist, which compiles the vendored llama.cpp; build it with
GGML_AMX_INT8=OFF on CPUs whose AMX kernels crash) in the interpreter that runs this script:

    python scripts/record_llama_cpp_layers.py MODEL.gguf OUT.npz 504,3575,282,4649,314

Tensors are captured through llama.cpp's eval callback under its graph names (attn_norm-0, Qcur-0 ...),
with flash attention on (llama-server's default on CPU).
"""

from __future__ import annotations

import ctypes
import sys

import llama_cpp
import numpy as np

KEEP_LAYERS = ("-0", "-1")


def main(path: str, out: str, tokens: list[int]) -> None:
    lib = ctypes.CDLL(llama_cpp.__file__.rsplit("/", 1)[0] + "/lib/libggml-base.so")
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_nelements.restype = ctypes.c_int64
    lib.ggml_nelements.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_is_contiguous.restype = ctypes.c_bool
    lib.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    got: dict[str, np.ndarray] = {}

    @llama_cpp.ggml_backend_sched_eval_callback
    def callback(t, ask, _user):
        if ask:
            return True
        name = lib.ggml_get_name(t).decode()
        is_f32 = ctypes.c_int.from_address(t).value == 0  # ggml_tensor.type comes first
        if is_f32 and name.endswith(KEEP_LAYERS) and lib.ggml_is_contiguous(t):
            buf = np.empty(lib.ggml_nelements(t), np.float32)
            lib.ggml_backend_tensor_get(t, buf.ctypes.data, 0, lib.ggml_nbytes(t))
            got[name] = buf.reshape(len(tokens), -1)
        return True

    llm = llama_cpp.Llama(path, n_ctx=512, n_threads=2, verbose=False, flash_attn=True)
    params = llm.context_params
    params.cb_eval, params.cb_eval_user_data = callback, None
    ctx = llama_cpp.llama_init_from_model(llm.model, params)
    ids = (ctypes.c_int32 * len(tokens))(*tokens)
    if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(ids, len(tokens))) != 0:
        raise SystemExit("llama_decode failed")
    np.savez_compressed(out, tokens=np.array(tokens), **got)
    print(f"{out}: {len(got)} tensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3].split(",")])
