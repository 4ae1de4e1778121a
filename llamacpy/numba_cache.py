"""Where numba keeps compiled kernels: a folder per version of the numba code, under llamacpy's cache.

numba invalidates a cached function only when the file that defines it changes, not when a function it
calls from another file does (numba's documented limitation): after an edit to `kernels/dispatch.py`, say,
`models/llama_step.py` would keep running its stale machine code. Keying the folder on the text of the
numba modules of `SHARED` (the packages whose jitted functions call each other across files) makes any such
edit (or upgrade) compile everything afresh. A jitted function elsewhere may call into `SHARED` but into no
other file (keep it so): numba's own check covers its file, so editing it recompiles just that file.
It also keeps the cache out of a read-only site-packages. `NUMBA_CACHE_DIR`, when set, wins.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

SHARED = ("kernels", "ops", "models")
KEEP = 4  # the newest folders of other versions kept (several checkouts may share the cache)


def numba_sources_digest(package: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for sub in SHARED for p in (package / sub).rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text:
            h.update(path.relative_to(package).as_posix().encode() + b"\0" + text)
    return h.hexdigest()[:16]


def configure() -> None:
    """Point numba at this version's folder (call before numba is imported)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    from .catalog import cache_dir

    root = cache_dir() / "numba"
    folder = root / numba_sources_digest(Path(__file__).parent)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if not folder.exists():
        _prune(root)


def _prune(root: Path) -> None:
    try:
        old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for p in old[KEEP:]:
        shutil.rmtree(p, ignore_errors=True)
