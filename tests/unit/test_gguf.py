"""GGUF reader: real files parse with zero-copy views; malformed files give clear errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from llamacpy.gguf import GGMLType, GGUFError, GGUFFile


def _kv_string(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


def make_gguf(tensors=(("w", 0, (4, 2), 0),), data: bytes | None = None, version: int = 3, magic=b"GGUF",
              alignment: int = 32) -> bytes:
    """A tiny GGUF: tensors given as (name, ggml type id, numpy shape, offset)."""
    kv = _kv_string("general.architecture", "llama")
    head = magic + struct.pack("<IQQ", version, len(tensors), 1) + kv
    for name, ttype, shape, offset in tensors:
        n = name.encode()
        head += struct.pack("<Q", len(n)) + n + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", d) for d in reversed(shape)) + struct.pack("<IQ", ttype, offset)
    pad = (-len(head)) % alignment
    body = data if data is not None else np.arange(8, dtype=np.float32).tobytes()
    return head + b"\0" * pad + body


def test_tiny_file_round_trip(tmp_path):
    p = tmp_path / "ok.gguf"
    p.write_bytes(make_gguf())
    g = GGUFFile(p)
    assert g.architecture == "llama"
    t = g.tensors["w"]
    assert t.type == GGMLType.F32 and t.shape == (4, 2)
    np.testing.assert_array_equal(t.data.view(np.float32).reshape(4, 2), np.arange(8).reshape(4, 2))
    assert not t.data.flags.writeable  # a view into the read-only map, not a copy


@pytest.mark.parametrize("blob, message", [
    (b"", "not a GGUF file"),
    (b"GGML" + b"\0" * 40, "magic"),
    (make_gguf(version=7), "unsupported GGUF version 7"),
    (make_gguf()[:40], "truncated"),
    (make_gguf(data=b"\0" * 8), "past the end of the file"),
    (make_gguf(tensors=(("w", 99, (4, 2), 0),)), "unknown type id 99"),
    (make_gguf(tensors=(("w", 0, (4, 2), 4),)), "not aligned"),
    (make_gguf(tensors=(("w", GGMLType.Q4_0, (1, 20), 0),)), "not a multiple"),
])
def test_malformed_files_name_file_and_problem(tmp_path, blob, message):
    p = tmp_path / "bad.gguf"
    p.write_bytes(blob)
    with pytest.raises(GGUFError) as e:
        GGUFFile(p)
    assert message in str(e.value) and str(p) in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GGUFError, match="cannot open"):
        GGUFFile(tmp_path / "nope.gguf")


@pytest.mark.slow
def test_real_model_metadata_and_tensors(smollm2_path):
    g = GGUFFile(smollm2_path)
    assert g.architecture == "llama"
    assert g.arch_get("block_count") == 30
    assert len(g.metadata["tokenizer.ggml.tokens"]) == 49152
    assert g.tensors["token_embd.weight"].type == GGMLType.Q8_0
    assert g.tensors["token_embd.weight"].shape == (49152, 576)
    assert g.tensors["blk.0.ffn_down.weight"].shape == (576, 1536)
    # zero copy: the tensor's bytes live inside the file's map
    assert g.tensors["blk.0.attn_q.weight"].data.base is not None
