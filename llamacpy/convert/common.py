"""What every converter shares: reading safetensors, choosing each tensor's type, writing with progress."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

OUTTYPES = ("f32", "f16", "q8_0")


class ConvertError(ValueError):
    """A model folder that cannot be converted; the message names the file and the problem."""


def safetensors_files(folder: Path) -> list[Path]:
    """model.safetensors, or the shards listed in model.safetensors.index.json."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    if (folder / "pytorch_model.bin").is_file():
        raise ConvertError(f"{folder}: only safetensors weights are supported (found pytorch_model.bin)")
    raise ConvertError(f"{folder}: no model.safetensors")


def read_tensors(folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 or integer array) for every tensor of the folder's safetensors files, one at a time."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a dependency
        raise ConvertError("converting needs the `safetensors` package (pip install safetensors)") from None
    for path in safetensors_files(folder):
        try:
            with safe_open(path, framework="numpy") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                    yield name, f.get_tensor(name)
        except (OSError, ValueError, TypeError) as e:  # bf16 has no numpy dtype; a broken header
            raise ConvertError(f"{path}: cannot read: {e}") from None


def tensor_type(name: str, data: np.ndarray, outtype: str, keep_f32: tuple[str, ...] = ()) -> str:
    """llama.cpp's converter rule: vectors, norms and the `keep_f32` tensors stay f32; matrices take the
    output type (q8_0 falls back to f16 when a row is not a whole number of 32-element blocks)."""
    if data.ndim <= 1 or name.endswith("_norm.weight") or name.split(".weight")[0] in keep_f32:
        return "f32"
    if outtype == "q8_0" and data.shape[-1] % 32:
        return "f16"
    return outtype


def add_tensor(writer, name: str, data: np.ndarray, qtype: str) -> None:
    """Add `data` (float32) to a GGUFWriter as `qtype`."""
    import gguf

    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == "f32":
        writer.add_tensor(name, data)
    elif qtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)


FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}  # llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0


def write(writer, out: Path, progress: Callable[[str], None]) -> None:
    """Header, metadata and tensors to `out`, reporting the bytes written."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    progress(f"convert: wrote {out.stat().st_size / 2**20:.1f} MiB")
