"""Importance matrix files as llama.cpp writes and reads them (tools/imatrix, common/imatrix-loader.cpp).

GGUF format (llama-imatrix's default): general.type = "imatrix", imatrix.datasets (strings),
imatrix.chunk_count and imatrix.chunk_size (u32), and for each weight, by sorted name, "<name>.in_sum2" (f32
[ne0, n_mat]: the sum over tokens of each input column squared, per expert) and "<name>.counts" (f32 [1, n_mat]:
the tokens summed). The legacy .dat format ([n_entries] then per entry name, ncall, nval, values; then the chunk
count and the dataset) is read and written too.

`load` gives what llama-quantize hands the quantizers: per weight the mean square per column (sums / count,
float32, 1.0 for an expert never routed to), as load_imatrix does.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..gguf import GGMLType, GGUFError, GGUFFile
from ..gguf.constants import DEFAULT_ALIGNMENT, ValueType
from ..gguf.writer import GGUFStreamWriter, TensorInfo, kv
from .ftypes import QuantizeError


@dataclass
class Imatrix:
    """Collected statistics: per weight name, sums f32[n_mat, ne0] and counts int[n_mat]."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False
    has_metadata: bool = True

    def importance(self) -> dict[str, np.ndarray]:
        """Per weight the flat f32[n_mat * ne0] mean squares llama-quantize uses (load_imatrix)."""
        out = {}
        for name, sums in self.sums.items():
            counts = self.counts[name]
            if self.legacy:
                ncall = int(counts[0]) if counts.size else 0
                e = sums / np.float32(ncall) if ncall > 0 else sums.copy()
            else:
                e = np.ones_like(sums)
                for j, c in enumerate(counts):
                    if c > 0:
                        e[j] = sums[j] / np.float32(c)
            out[name] = np.ascontiguousarray(e, np.float32).reshape(-1)
        return out


def save(path: str | os.PathLike, m: Imatrix, legacy: bool = False, last_chunk: int | None = None) -> None:
    """Write `m` in llama-imatrix's GGUF format (names sorted, as save_imatrix), or with `legacy` in its .dat
    format (save_imatrix_legacy; `last_chunk`: the chunks collected, default m.chunk_count)."""
    if legacy:
        _save_legacy(path, m, m.chunk_count if last_chunk is None else last_chunk)
        return
    kvs = [kv("general.type", ValueType.STRING, "imatrix"),
           kv("imatrix.datasets", ValueType.ARRAY, m.datasets, ValueType.STRING),
           kv("imatrix.chunk_count", ValueType.UINT32, m.chunk_count),
           kv("imatrix.chunk_size", ValueType.UINT32, m.chunk_size)]
    names = sorted(n for n in m.sums if m.sums[n].size and len(m.counts[n]))
    infos, blobs = [], []
    for name in names:
        sums = np.ascontiguousarray(m.sums[name], np.float32)
        counts = np.asarray(m.counts[name], np.float32).reshape(1, -1)
        n_mat = counts.shape[1]
        infos += [TensorInfo(f"{name}.in_sum2", (sums.size // n_mat, n_mat), GGMLType.F32, sums.nbytes),
                  TensorInfo(f"{name}.counts", (1, n_mat), GGMLType.F32, counts.nbytes)]
        blobs += [sums, counts]
    tmp = Path(f"{path}.part")
    with open(tmp, "wb") as fh:
        w = GGUFStreamWriter(fh, kvs, infos, DEFAULT_ALIGNMENT)
        for b in blobs:
            w.write_tensor_data(memoryview(b.reshape(-1)).cast("B"))
        w.close()
    os.replace(tmp, path)


def _save_legacy(path: str | os.PathLike, m: Imatrix, last_chunk: int) -> None:
    """[n_entries]; per entry (sorted) its name, ncall = ceil(max count / chunk size), nval and the values as
    mean squares times ncall (1 for an expert without data); the chunks collected; the last dataset's name.
    Entries without any data are left out, as llama-imatrix leaves them."""
    names = sorted(n for n in m.sums if len(m.counts[n]) and np.asarray(m.counts[n]).any())
    chunk = max(m.chunk_size, 1)
    out = [struct.pack("<i", len(names))]
    for name in names:
        counts = np.asarray(m.counts[name], np.int64)
        sums = np.asarray(m.sums[name], np.float32).reshape(len(counts), -1)
        ncall = (int(counts.max()) + chunk - 1) // chunk
        c = counts.astype(np.float32)[:, None]
        values = np.where(c == 0, np.float32(1.0), sums / np.where(c == 0, np.float32(1.0), c)) * np.float32(ncall)
        raw = name.encode("utf-8")
        out += [struct.pack("<i", len(raw)), raw, struct.pack("<ii", ncall, sums.size),
                np.ascontiguousarray(values, np.float32).tobytes()]
    dataset = (m.datasets[-1] if m.datasets else "").encode("utf-8")
    out += [struct.pack("<i", last_chunk), struct.pack("<i", len(dataset)), dataset]
    tmp = Path(f"{path}.part")
    tmp.write_bytes(b"".join(out))
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> Imatrix:
    """Read an imatrix file (GGUF, else legacy .dat), refusing what llama-quantize refuses."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise QuantizeError(f"failed to load imatrix from '{path}': {e.strerror}") from None
    m = _load_gguf(path) if magic == b"GGUF" else _load_legacy(path)
    if not m.legacy and not m.has_metadata:
        raise QuantizeError(f"missing imatrix metadata in file {path}")
    for name, s in m.sums.items():
        if not np.isfinite(s).all():
            raise QuantizeError(f"imatrix contains non-finite value for {name}")
    return m


def _load_gguf(path) -> Imatrix:
    try:
        g = GGUFFile(path)
    except GGUFError as e:
        raise QuantizeError(f"failed to load imatrix from '{path}': {e}") from None
    md = g.metadata
    m = Imatrix(datasets=[str(d) for d in md.get("imatrix.datasets", [])],
                chunk_count=int(md.get("imatrix.chunk_count", 0)), chunk_size=int(md.get("imatrix.chunk_size", 0)),
                has_metadata=all(k in md for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")))
    if not g.tensors:
        raise QuantizeError(f"no data in file {path}")
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tname, t in g.tensors.items():
        for suffix in (".in_sum2", ".counts"):
            if tname.endswith(suffix):
                if t.type != GGMLType.F32:
                    raise QuantizeError(f"sums and counts for {tname.removesuffix(suffix)} must be F32")
                pairs.setdefault(tname.removesuffix(suffix), {})[suffix] = t.data.view(np.float32).reshape(t.shape)
    for name, p in sorted(pairs.items()):
        if len(p) != 2:
            raise QuantizeError(f"mismatched sums and counts for {name}")
        counts = np.rint(p[".counts"].reshape(-1)).astype(np.int64)  # std::lround
        m.sums[name] = np.array(p[".in_sum2"], np.float32).reshape(counts.size, -1)
        m.counts[name] = counts
    g.close()
    return m


def _load_legacy(path) -> Imatrix:
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise QuantizeError(f"failed to load imatrix from '{path}': truncated at byte {pos}")
        v = struct.unpack_from(fmt, data, pos)
        pos += size
        return v

    (n_entries,) = take("<i")
    if n_entries < 1:
        raise QuantizeError(f"no data in file {path}")
    m = Imatrix(legacy=True)
    for _ in range(n_entries):
        (n,) = take("<i")
        name = take(f"<{n}s")[0].decode("utf-8", "replace")
        ncall, nval = take("<ii")
        if nval < 1:
            raise QuantizeError(f"failed reading number of values for entry {name}")
        m.sums[name] = np.array(take(f"<{nval}f"), np.float32).reshape(1, -1)
        m.counts[name] = np.array([ncall], np.int64)
    if pos + 4 <= len(data):
        (m.chunk_count,) = take("<i")
        if pos + 4 <= len(data):
            (n,) = take("<i")
            if n > 0 and pos + n <= len(data):
                m.datasets.append(take(f"<{n}s")[0].decode("utf-8", "replace"))
    return m
