"""Writing GGUF v3 files as ggml's gguf_write does: header, metadata entries, tensor infos, aligned data.

Metadata entries are passed already serialized (`GGUFFile.raw_kv` copies one unchanged, `kv` makes a new one
of a given value type), so values keep their exact types. The caller streams each tensor's bytes in order;
sizes are declared up front, so the header is written first and nothing is buffered: the RSS of writing a
file is one tensor (or one slab of it), whatever the model's size.

This is the project's one GGUF writer: quantize, imatrix, convert, and the scripts that make test models
(scripts/make_tiny_models.py, make_lora_adapter.py: their files are the same bytes as gguf-py wrote them). gguf-py's
GGUFWriter holds every tensor until the end; it is kept only to collect metadata, since its add_* methods know
llama.cpp's keys and value types (convert/common.py serializes what it collected).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .constants import GGUF_MAGIC, SCALAR_DTYPE, GGMLType, ValueType

GGUF_VERSION = 3


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def kv_u32(key: str, value: int) -> bytes:
    """A serialized uint32 metadata entry."""
    return _string(key) + struct.pack("<II", ValueType.UINT32, value)


def _value(vtype: ValueType, value) -> bytes:
    if vtype == ValueType.STRING:
        return _string(value)
    if vtype == ValueType.BOOL:
        return struct.pack("<B", 1 if value else 0)
    return np.asarray(value, SCALAR_DTYPE[vtype]).tobytes()


def kv(key: str, vtype: ValueType, value, item: ValueType | None = None) -> bytes:
    """A serialized metadata entry of type `vtype`; an ARRAY's elements are of type `item`."""
    head = _string(key) + struct.pack("<I", vtype)
    if vtype != ValueType.ARRAY:
        return head + _value(vtype, value)
    if item is None:
        raise ValueError(f"{key}: an array needs its item type")
    values = list(value)
    body = (np.asarray(values, SCALAR_DTYPE[item]).tobytes() if item in SCALAR_DTYPE and item != ValueType.BOOL
            else b"".join(_value(item, v) for v in values))
    return head + struct.pack("<IQ", item, len(values)) + body


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of the file to write: `ne` in GGUF order (ne0 = row length first), `nbytes` of data. `dims`: how
    many dimensions its info lists; 0, ggml_n_dims (trailing 1s dropped, as ggml's writer does); the converter
    gives all of them, as gguf-py's writer does (a (1, n) tensor stays 2-D)."""

    name: str
    ne: tuple[int, ...]
    type: GGMLType
    nbytes: int
    dims: int = 0


def n_dims(ne: tuple[int, ...]) -> int:
    """ggml_n_dims: the dimensions up to the last one that is not 1 (at least 1)."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return max(n, 1)


def pad(n: int, align: int) -> int:
    return -(-n // align) * align


class GGUFStreamWriter:
    """Write the header, then each tensor's bytes in order with `write_tensor_data`, then `close`.

    >>> w = GGUFStreamWriter(fh, kvs, infos, alignment=32); w.write_tensor_data(b"..."); w.close()
    """

    def __init__(self, fh: BinaryIO, kvs: Iterable[bytes], infos: list[TensorInfo], alignment: int):
        self.fh, self.infos, self.align = fh, infos, alignment
        kvs = list(kvs)
        head = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(infos), len(kvs)), *kvs]
        offset = 0
        for t in infos:
            nd = t.dims or n_dims(t.ne)
            head.append(_string(t.name) + struct.pack(f"<I{nd}QIQ", nd, *t.ne[:nd], t.type, offset))
            offset += pad(t.nbytes, alignment)
        header = b"".join(head)
        # a file without tensors (a vocabulary) ends with its metadata, unpadded, as gguf-py writes it
        fh.write(header + bytes(pad(len(header), alignment) - len(header) if infos else 0))
        self.next = 0  # index of the tensor whose data comes next
        self.written = 0  # bytes of that tensor written so far

    def write_tensor_data(self, data: bytes | memoryview) -> None:
        """Append bytes of the current tensor; it is padded and the next begins once it is complete."""
        t = self.infos[self.next]
        self.written += len(data)
        if self.written > t.nbytes:
            raise ValueError(f"{t.name}: {self.written} bytes written, {t.nbytes} declared")
        self.fh.write(data)
        if self.written == t.nbytes:
            self.fh.write(bytes(pad(t.nbytes, self.align) - t.nbytes))
            self.next, self.written = self.next + 1, 0

    def close(self) -> None:
        if self.next != len(self.infos):
            raise ValueError(f"only {self.next} of {len(self.infos)} tensors were written")
