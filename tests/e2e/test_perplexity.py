"""`llamacpy perplexity` against llama-perplexity's figures (same text, same settings, 2 threads).

Reference (llama.cpp build 0c1e570, -c 256 --chunks 8 -b 256) on Debian's GPL-3 text.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

TEXT = Path("/usr/share/common-licenses/GPL-3")
TEXT_SHA256 = "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986"
LLAMA_CPP_PPL = {"smollm2_path": 22.2963, "qwen05_path": 8.2709}


@pytest.mark.slow
@pytest.mark.parametrize("fixture", list(LLAMA_CPP_PPL))
def test_perplexity_within_one_percent_of_llama_cpp(fixture, request):
    if not TEXT.exists() or hashlib.sha256(TEXT.read_bytes()).hexdigest() != TEXT_SHA256:
        pytest.skip("Debian's GPL-3 text (base-files) is not on this machine")
    model = request.getfixturevalue(fixture)
    r = subprocess.run([sys.executable, "-m", "llamacpy", "perplexity", "-m", str(model), "-f", str(TEXT),
                        "-c", "256", "--chunks", "8", "-b", "256"], capture_output=True, text=True, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stderr
    running = re.findall(r"\[(\d+)\](\d+\.\d+),", r.stdout)
    assert [int(i) for i, _ in running] == list(range(1, 9))  # progressive [i]value lines
    ppl, err = map(float, re.search(r"Final estimate: PPL = (\d+\.\d+) \+/- (\d+\.\d+)", r.stdout).groups())
    ref = LLAMA_CPP_PPL[fixture]
    assert abs(ppl - ref) / ref < 0.01, f"PPL {ppl} vs llama.cpp {ref}"
    assert 0 < err < ppl
