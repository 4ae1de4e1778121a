"""A slot's state in a file (llama-server's /slots/{id}?action=save|restore): its tokens and their K/V, so a
restored slot continues without evaluating that prefix again. Runs on the engine thread, on an idle slot.

The layout is llamacpy's own (llama.cpp's state files hold ggml's internal buffers), little-endian:

    b"LLCPYSLT", u32 version (1), 16 bytes model fingerprint, u32 n_layer, n_head_kv, head_dim, n_tokens,
    i32 tokens[n_tokens], then per layer f16 K[n_head_kv, n_tokens, head_dim], f16 V[n_head_kv, n_tokens, head_dim]

The fingerprint (of the model's shape and its first embedding rows) refuses a file saved with another model.
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np

from ..models import DecoderModel, KVCache

MAGIC, VERSION = b"LLCPYSLT", 1
HEAD = struct.Struct("<8sI16sIIII")


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
    if magic != MAGIC or version != VERSION:
        raise SlotFileError("not a llamacpy slot file (or another version)")
    if fp != fingerprint(model) or (n_layer, n_head_kv, head_dim) != (a.n_layer, a.n_head_kv, a.head_dim):
        raise SlotFileError("the slot file was saved with another model")
    per_kv = n_head_kv * n * head_dim * 2
    if len(data) != HEAD.size + 4 * n + 2 * n_layer * per_kv:
        raise SlotFileError("the slot file is truncated or damaged")
    if n > room:
        raise SlotFileError(f"the restored prompt ({n} tokens) does not fit in the slot context ({room})")
    tokens = np.frombuffer(data, "<i4", n, HEAD.size).tolist()
    if tokens and (min(tokens) < 0 or max(tokens) >= a.n_vocab):
        raise SlotFileError("invalid tokens in the slot file")
    offset = HEAD.size + 4 * n
    for layer in range(n_layer):
        for kv in (cache.k, cache.v):
            block = np.frombuffer(data, np.float16, n_head_kv * n * head_dim, offset)
            kv[layer][seq][:, :n] = block.reshape(n_head_kv, n, head_dim)
            offset += per_kv
    return tokens, len(data)
