"""A first start that serves before the fused layer step is compiled.

The fused numba step of `models/llama_step.py` is most of a cold start's compiling (17 of 29 s for smollm2 on
this machine kind), and the layer-by-layer path gives the same bits (tests/e2e/test_fused_step.py). So when the
numba cache holds no fused step for the model's weight types, `start` compiles it in a child process
(`python -m llamacpy.engine.precompile MODEL`, on the other core, into the same cache) while the server warms
up and serves the layer-by-layer path; the model takes the fused step from the cache once the child is done.
A marker file beside the numba cache says the step was compiled for that set of types, so a warm start
spawns nothing. A child that fails changes nothing but speed: the step then compiles on first use, as before.
A server stopped before its child is done leaves the child to finish (at most one compile), so the next start
is warm; `compiling` tells whether such a child is running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..models import DecoderModel, Segment

CHILD_MODULE = "llamacpy.engine.precompile"


def _kind_set(model: DecoderModel, row_exact: bool) -> int | None:
    """The `dispatch.KindSet` the model's fused step is compiled for (None: the model has no fused step)."""
    steps = getattr(model, "_layer_steps", None)  # llama.Model and its subclasses
    steps = steps and steps(row_exact)
    return steps[0][2] if steps else None


def _marker(kset: int | None, row_exact: bool) -> Path | None:
    """The file that says the fused step for this kind set is in the cache (None: no step or no cache folder)."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder or kset is None:
        return None
    return Path(folder) / f"fused-step-{kset:x}{'-exact' if row_exact else ''}.ok"


def mark_compiled(model: DecoderModel, row_exact: bool = False) -> None:
    """Record that the fused step is in numba's cache, if this process has compiled (or loaded) it."""
    from ..models.llama_step import layer_step

    kset = _kind_set(model, row_exact)
    marker = _marker(kset, row_exact)
    if marker is None or marker.exists():
        return
    if any(getattr(t, "literal_value", None) == kset for sig in layer_step.signatures for t in sig):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def compiling(parent: int | None = None) -> bool:
    """Whether a child of this module is compiling now (only `parent`'s, when given)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if CHILD_MODULE.encode() in cmdline.read_bytes():
                ppid = int(cmdline.with_name("stat").read_text().rsplit(") ", 1)[1].split()[1])
                if parent is None or ppid == parent:
                    return True
        except (OSError, ValueError, IndexError):  # gone meanwhile
            pass
    return False


def start(model: DecoderModel, row_exact: bool = False, log: Callable[[str], None] = lambda m: None
          ) -> Callable[[], bool] | None:
    """Compile the model's fused step (and its row-exact variant, for drafts) in a child process if the cache
    lacks it; returns the gate to put on `model.fused_gate` (true once the child has ended), or None when there
    is nothing to wait for."""
    markers = [_marker(_kind_set(model, exact), exact) for exact in ((False, True) if row_exact else (False,))]
    if None in markers or all(m.exists() for m in markers):
        return None
    cmd = [sys.executable, "-m", CHILD_MODULE, model.g.path] + (["--row-exact"] if row_exact else [])
    try:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        log(f"cannot compile the fused step in the background ({e}); it compiles on first use")
        return None
    log("first start for these weight types: the fused layer step compiles in the background "
        "(requests are served meanwhile, layer by layer, with the same results)")
    return lambda: child.poll() is not None


def compile_fused(path: str, row_exact: bool) -> None:
    """Run the fused step once on a scratch cache (the types of the server's own calls), then mark it."""
    from ..gguf import GGUFFile
    from ..models import load_model

    model = load_model(GGUFFile(path))
    cache = model.new_cache(16, 1)
    for exact in (False, True) if row_exact else (False,):
        model.forward(np.zeros(2, np.int64), [Segment(0, 0, 2)], cache, row_exact=exact)
        mark_compiled(model, exact)


if __name__ == "__main__":
    os.nice(10)  # the server's own work first: its warm-up and the requests it serves meanwhile
    compile_fused(sys.argv[1], "--row-exact" in sys.argv[2:])
