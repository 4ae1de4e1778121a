"""What every converter shares: finding the weights, choosing each tensor's type, streaming the GGUF out.

Metadata is collected with gguf-py's GGUFWriter API (its `add_*` methods know llama.cpp's keys and value
types) and only serialized from it; the tensors are written by the project's own streaming writer
(gguf/writer.py), one at a time, so converting holds one tensor in memory, not the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..gguf.constants import BLOCK_LAYOUT, GGMLType, ValueType
from ..gguf.writer import GGUFStreamWriter, TensorInfo, kv
from .safetensors import Safetensors, SafetensorsError

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # llama_ftype: ALL_F32, MOSTLY_F16/Q8_0/BF16
GGML_TYPES = {"f32": GGMLType.F32, "f16": GGMLType.F16, "bf16": GGMLType.BF16, "q8_0": GGMLType.Q8_0}
ALIGNMENT = 32
SLAB_BYTES = 16 << 20  # float32 rows encoded per step


class ConvertError(ValueError):
    """A model folder that cannot be converted; the message names the file and the problem."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: cannot read: {e}") from None


def safetensors_files(folder: Path) -> list[Path]:
    """model.safetensors, or the shards listed in model.safetensors.index.json."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ConvertError(f"{index}: not a safetensors index ({e})") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ConvertError(f"{index}: shard {missing[0]} is missing")
        return [folder / s for s in shards]
    if (folder / "pytorch_model.bin").is_file():
        raise ConvertError(f"{folder}: only safetensors weights are supported (found pytorch_model.bin)")
    raise ConvertError(f"{folder}: no model.safetensors")


def open_weights(folder: Path) -> Safetensors:
    try:
        return Safetensors(safetensors_files(folder))
    except SafetensorsError as e:
        raise ConvertError(str(e)) from None


def tensor_type(name: str, shape: tuple[int, ...], outtype: str, keep_f32: tuple[str, ...] = ()) -> str:
    """convert_hf_to_gguf.py's rule: vectors, norms, non-weights and the `keep_f32` tensors (the MoE routers,
    position and token-type embeddings) stay f32; matrices take the output type (q8_0 falls back to f16 when
    a row is not a whole number of 32-element blocks)."""
    base = name.rsplit(".", 1)[0]
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") \
            or base.split(".")[-1] in keep_f32 or base in keep_f32:
        return "f32"
    if outtype == "q8_0" and shape[-1] % 32:
        return "f16"
    return outtype


def encode(data: np.ndarray, qtype: str) -> np.ndarray:
    """float32 data -> the bytes (or values) of a GGUF tensor of `qtype`, as gguf-py's quantizer writes them."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == "f32":
        return data
    if qtype == "f16":
        return data.astype(np.float16)
    import gguf

    t = gguf.GGMLQuantizationType.BF16 if qtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.quantize(data, t)


def nbytes(shape: tuple[int, ...], qtype: str) -> int:
    per_block, block_bytes = BLOCK_LAYOUT[GGML_TYPES[qtype]]
    return int(np.prod(shape, dtype=np.int64)) // per_block * block_bytes


def serialized_kvs(gw) -> list[bytes]:
    """gguf-py GGUFWriter metadata (in the order it was added) -> serialized entries for GGUFStreamWriter."""
    out = []
    for key, v in gw.kv_data[0].items():
        vtype = ValueType(int(v.type))
        value = v.value
        if vtype == ValueType.ARRAY:
            item = ValueType(int(v.sub_type)) if v.sub_type is not None else _item_type(value)
            if item == ValueType.STRING:
                value = [x.decode("utf-8") if isinstance(x, (bytes, bytearray)) else x for x in value]
            out.append(kv(key, vtype, value, item))
        else:
            out.append(kv(key, vtype, value.decode("utf-8") if isinstance(value, bytes) else value))
    return out


def _item_type(values: list) -> ValueType:
    first = values[0] if values else ""
    if isinstance(first, (str, bytes, bytearray)):
        return ValueType.STRING
    if isinstance(first, bool):
        return ValueType.BOOL
    return ValueType.INT32 if isinstance(first, int) else ValueType.FLOAT32


def write_collected(gw, path: Path) -> Path:
    """Write what a gguf-py GGUFWriter collected in memory (metadata, `add_tensor` arrays) with the project's
    writer: the same bytes gguf-py writes (the scripts that make test models build files this way)."""
    infos, arrays = [], []
    for name, ti in gw.tensors[0].items():
        infos.append(TensorInfo(name, tuple(int(d) for d in reversed(ti.shape)), GGMLType(int(ti.dtype)),
                                int(ti.nbytes), len(ti.shape)))
        arrays.append(ti.tensor)
    with open(path, "wb") as fh:
        w = GGUFStreamWriter(fh, serialized_kvs(gw), infos, ALIGNMENT)
        for a in arrays:
            w.write_tensor_data(memoryview(np.ascontiguousarray(a)).cast("B"))
        w.close()
    return path


Planned = tuple[str, tuple[int, ...], str, Callable[[], np.ndarray]]  # name, numpy shape, type, loader


def write_gguf(out: Path, gw, tensors: Iterable[Planned], progress: Callable[[str], None]) -> None:
    """Metadata from `gw`, then each planned tensor, loaded and encoded one at a time."""
    plan = list(tensors)
    infos = [TensorInfo(name, tuple(reversed(shape)), GGML_TYPES[q], nbytes(shape, q), len(shape))
             for name, shape, q, _ in plan]
    t0 = time.monotonic()
    with open(out, "wb") as fh:
        w = GGUFStreamWriter(fh, serialized_kvs(gw), infos, ALIGNMENT)
        for i, (name, shape, qtype, load) in enumerate(plan, 1):
            data = load()
            if data.shape != tuple(shape):
                raise ConvertError(f"{name}: shape {data.shape}, {tuple(shape)} planned")
            rows = data.reshape(-1, data.shape[-1]) if data.ndim else data.reshape(1, 1)
            step = max(1, SLAB_BYTES // (4 * rows.shape[1]))
            for r0 in range(0, rows.shape[0], step):  # encoded a slab of rows at a time: rows are independent
                w.write_tensor_data(memoryview(np.ascontiguousarray(encode(rows[r0:r0 + step], qtype))).cast("B"))
            progress(f"convert: [{i:4d}/{len(plan)}] {name:36s} {'x'.join(map(str, shape)):>14s} "
                     f"{qtype}")
        w.close()
    progress(f"convert: wrote {out.stat().st_size / 2**20:.1f} MiB in {time.monotonic() - t0:.1f} s")
