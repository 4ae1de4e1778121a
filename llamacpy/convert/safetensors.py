"""Hugging Face safetensors files read lazily from a memory map, and written (for the GGUF -> HF export).

Our own, not the `safetensors` package: its numpy API cannot return (or write) BF16 tensors, since numpy has
no bfloat16 ("data type 'bfloat16' not understood", safetensors 0.8), and BF16 is what most checkpoints hold.
The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, data_offsets) and the
data; `stored` gives a tensor as a view of the mapped file (for shapes), `float32` reads and widens it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# safetensors dtype -> numpy dtype of the stored bits (BF16 as uint16: widened by a 16-bit shift)
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
MAX_HEADER = 100 << 20


class SafetensorsError(ValueError):
    """A file that is not a readable safetensors file; the message names it."""


@dataclass(frozen=True)
class Entry:
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


def read_header(path: Path) -> dict[str, Entry]:
    """name -> Entry for every tensor of one file (the `__metadata__` entry skipped)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise SafetensorsError(f"{path}: too short for a safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER:
                raise SafetensorsError(f"{path}: header of {n} bytes (not a safetensors file?)")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: cannot read the safetensors header: {e}") from None
    size = path.stat().st_size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if dtype not in DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r} has dtype {dtype}, which is not supported")
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        if b - a != want or 8 + n + b > size:
            raise SafetensorsError(f"{path}: tensor {name!r} does not fit its declared shape and the file size")
        out[name] = Entry(path, dtype, shape, 8 + n + a, 8 + n + b)
    return out


class Safetensors:
    """Every tensor of a model's safetensors files (one file, or the shards of an index), by name."""

    def __init__(self, files: list[Path]):
        self.entries: dict[str, Entry] = {}
        for path in files:
            self.entries.update(read_header(path))
        self._maps: dict[Path, np.memmap] = {}

    def names(self) -> list[str]:
        """In the order llama.cpp's converter walks them: file by file, sorted by name within a file."""
        return sorted(self.entries, key=lambda n: (str(self.entries[n].path), n))

    def stored(self, name: str) -> np.ndarray:
        """The tensor as stored (BF16 as its uint16 bits), a view of the memory map."""
        e = self.entries[name]
        if e.path not in self._maps:
            self._maps[e.path] = np.memmap(e.path, dtype=np.uint8, mode="r")
        return self._maps[e.path][e.start:e.end].view(DTYPES[e.dtype]).reshape(e.shape)

    def read(self, name: str) -> np.ndarray:
        """The tensor as stored, read into memory (not mapped: a converter reads each tensor once, and mapped
        pages would stay in its RSS until the end)."""
        e = self.entries[name]
        dtype = np.dtype(DTYPES[e.dtype])
        return np.fromfile(e.path, dtype=dtype, count=(e.end - e.start) // dtype.itemsize,
                           offset=e.start).reshape(e.shape)

    def float32(self, name: str) -> np.ndarray:
        """The tensor widened to float32 (BF16 exactly: its bits shifted into the high half)."""
        raw = self.read(name)
        if self.entries[name].dtype == "BF16":
            bits = raw.astype(np.uint32)
            bits <<= 16  # in place: one float32-sized buffer, not two
            return bits.view(np.float32)
        return raw.astype(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounded to nearest even (as torch and ggml round; NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    r[nan] = ((u[nan] >> 16) | 64).astype(np.uint16)
    return r


def write(path: Path, tensors: dict[str, np.ndarray], dtype: str = "BF16", metadata: dict | None = None) -> None:
    """Write float tensors as one safetensors file of `dtype` (F32, F16 or BF16), in name order."""
    stored = {}
    for name in sorted(tensors):
        x = np.asarray(tensors[name], dtype=np.float32)
        stored[name] = (bf16_bits(x) if dtype == "BF16" else x.astype(np.float16 if dtype == "F16" else np.float32))
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, x in stored.items():
        header[name] = {"dtype": dtype, "shape": list(x.shape), "data_offsets": [offset, offset + x.nbytes]}
        offset += x.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for x in stored.values():
            f.write(np.ascontiguousarray(x).tobytes())
