"""A slot's state in a file (llama-server's /slots/{id}?action=save|restore): its tokens and their K/V, so a
restored slot continues without evaluating that prefix again. Runs on the engine thread, on an idle slot.

The layout is llamacpy's own (llama.cpp's state files hold ggml's internal buffers), little-endian:

    b"LLCPYSLT", u32 version (2), 16 bytes model fingerprint, u32 n_layer, n_head_kv, head_dim, n_tokens,
    u32 type_k, type_v (GGML types), i32 tokens[n_tokens], then per layer K[n_head_kv, n_tokens, row_k] and
    V[n_head_kv, n_tokens, row_v], each row as the cache holds it (f16 values, or blocks of a quantized type)

Version 1 files (before quantized caches) are f16 K and V without the two types. The fingerprint (of the model's
shape and its first embedding rows) refuses a file saved with another model; a file of other cache types is
refused too (its rows would need converting, which llama.cpp does not do either).
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np

from ..gguf import GGMLType
from ..models import DecoderModel, KVCache

MAGIC, VERSION = b"LLCPYSLT", 2
HEAD = struct.Struct("<8sI16sIIII")
TYPES = struct.Struct("<II")  # version 2: type_k, type_v


class SlotFileError(ValueError):
    pass


def fingerprint(model: DecoderModel) -> bytes:
    a = model.args
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.arch}:{a.n_layer}:{a.n_embd}:{a.n_head_kv}:{a.head_dim}:{a.n_vocab}".encode())
    h.update(np.ascontiguousarray(model.embed(np.arange(min(4, a.n_vocab), dtype=np.int64))).tobytes())
    return h.digest()


def save(path: str, model: DecoderModel, cache: KVCache, seq: int, tokens: list[int]) -> int:
    """Write the slot's state; returns the bytes written. Atomic: a crash leaves the old file."""
    a, n = model.args, len(tokens)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(HEAD.pack(MAGIC, VERSION, fingerprint(model), a.n_layer, a.n_head_kv, a.head_dim, n))
        f.write(TYPES.pack(int(cache.type_k), int(cache.type_v)))
        f.write(np.asarray(tokens, "<i4").tobytes())
        for layer in range(a.n_layer):
            f.writelines(np.ascontiguousarray(kv[layer][seq][:, :n]).tobytes() for kv in (cache.k, cache.v))
        size = f.tell()
    os.replace(tmp, path)
    return size


def load(path: str, model: DecoderModel, cache: KVCache, seq: int, room: int) -> tuple[list[int], int]:
    """Read a state into the slot's rows; returns (tokens, bytes read). SlotFileError for a file that is not a
    slot file of this model or holds more than `room` tokens."""
    a = model.args
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SlotFileError(f"cannot read the slot file: {e.strerror}") from None
    if len(data) < HEAD.size:
        raise SlotFileError("not a llamacpy slot file")
    magic, version, fp, n_layer, n_head_kv, head_dim, n = HEAD.unpack_from(data)
    if magic != MAGIC or version not in (1, VERSION):
        raise SlotFileError("not a llamacpy slot file (or another version)")
    if fp != fingerprint(model) or (n_layer, n_head_kv, head_dim) != (a.n_layer, a.n_head_kv, a.head_dim):
        raise SlotFileError("the slot file was saved with another model")
    head = HEAD.size
    types = (GGMLType.F16, GGMLType.F16)
    if version >= 2:
        if len(data) < head + TYPES.size:
            raise SlotFileError("the slot file is truncated or damaged")
        types = TYPES.unpack_from(data, head)
        head += TYPES.size
    if tuple(types) != (cache.type_k, cache.type_v):
        names = "/".join(GGMLType(t).name if t in GGMLType._value2member_map_ else str(t) for t in types)
        raise SlotFileError(f"the slot file holds a {names} KV cache, this server's is "
                            f"{cache.type_k.name}/{cache.type_v.name} (-ctk/-ctv)")
    row_k, row_v = cache.k[0].shape[-1] * cache.k[0].itemsize, cache.v[0].shape[-1] * cache.v[0].itemsize
    per_k, per_v = n_head_kv * n * row_k, n_head_kv * n * row_v
    if len(data) != head + 4 * n + n_layer * (per_k + per_v):
        raise SlotFileError("the slot file is truncated or damaged")
    if n > room:
        raise SlotFileError(f"the restored prompt ({n} tokens) does not fit in the slot context ({room})")
    tokens = np.frombuffer(data, "<i4", n, head).tolist()
    if tokens and (min(tokens) < 0 or max(tokens) >= a.n_vocab):
        raise SlotFileError("invalid tokens in the slot file")
    offset = head + 4 * n
    for layer in range(n_layer):
        for kv, per in ((cache.k, per_k), (cache.v, per_v)):
            rows = kv[layer][seq]
            block = np.frombuffer(data, rows.dtype, per // rows.itemsize, offset)
            rows[:, :n] = block.reshape(n_head_kv, n, rows.shape[-1])
            offset += per
    return tokens, len(data)
