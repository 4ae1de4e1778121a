"""numba's cache folder follows the text of the numba modules that call each other across files."""

from __future__ import annotations

import os
import subprocess
import sys

from llamacpy.numba_cache import numba_sources_digest


def _package(root):
    for sub, text in (("kernels/a.py", "import numba\n"), ("models/b.py", "from numba import njit\n"),
                      ("server/c.py", "x = 1\n"), ("quantize/d.py", "import numba\n")):
        (root / sub).parent.mkdir(parents=True, exist_ok=True)
        (root / sub).write_text(text)
    return root


def test_kernel_edits_move_the_folder_other_edits_do_not(tmp_path):
    pkg = _package(tmp_path)
    before = numba_sources_digest(pkg)
    (pkg / "server/c.py").write_text("x = 2\n")  # no numba: same folder
    (pkg / "quantize/d.py").write_text("import numba\n# edited\n")  # numba's own check covers this file
    assert numba_sources_digest(pkg) == before
    (pkg / "models/b.py").write_text("from numba import njit\n# edited\n")
    assert numba_sources_digest(pkg) != before


def test_the_folder_is_set_before_numba_loads_and_the_user_setting_wins(tmp_path):
    code = "import llamacpy, os, numba.core.config as c; print(os.environ['NUMBA_CACHE_DIR'], c.CACHE_DIR)"
    env = {**os.environ, "LLAMACPY_CACHE": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    ours, seen = subprocess.check_output([sys.executable, "-c", code], env=env, text=True).split()
    assert ours == seen and ours.startswith(str(tmp_path / "numba"))
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    assert subprocess.check_output([sys.executable, "-c", code], env=env, text=True).split() == [str(tmp_path / "mine")] * 2
