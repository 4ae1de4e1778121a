#!/usr/bin/env python3
"""`llamacpy convert` against llama.cpp's convert_hf_to_gguf.py, same folders, same run (not run by CI).

    LLAMA_CPP=/path/to/llama.cpp CONVERT_PYTHON=/path/to/venv/bin/python python3 scripts/bench_convert.py [--reps 2]

The folders are the catalog decoders exported in BF16 by scripts/export_hf.py (as Hugging Face ships them),
converted to F16 and to Q8_0 by both programs in turn; the best wall time of each and its peak RSS (GNU
time's %M) are printed with the ratio llama.cpp / llamacpy (above 1: llamacpy is faster). See
scripts/record_llama_convert.py for what CONVERT_PYTHON needs. The two outputs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
MODELS = {"smollm2 135M": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3 270M": "gemma-3-270m-q4_k_m.gguf",
          "qwen2.5 0.5B": "qwen2.5-coder-0.5b-instruct.gguf"}


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run."""
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, cwd=cwd, check=False)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    wall, rss = r.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) / 1024


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args(argv)
    llama_cpp, python = Path(os.environ["LLAMA_CPP"]), os.environ["CONVERT_PYTHON"]
    print(f"{'model':14s} {'type':5s} {'llama.cpp s':>11s} {'llamacpy s':>10s} {'ratio':>6s} "
          f"{'llama.cpp MiB':>13s} {'llamacpy MiB':>12s} same")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for label, file in MODELS.items():
            folder = d / label.split()[0]
            subprocess.run([sys.executable, str(ROOT / "scripts/export_hf.py"), str(CACHE / file), str(folder)],
                           check=True, capture_output=True)
            for outtype in ("f16", "q8_0"):
                ref, ours = d / "ref.gguf", d / "ours.gguf"
                best: dict[str, tuple[float, float]] = {}
                for _ in range(a.reps):
                    for who, cmd, cwd in (
                            ("ref", [python, "convert_hf_to_gguf.py", str(folder), "--outfile", str(ref),
                                     "--outtype", outtype], llama_cpp),
                            ("ours", [sys.executable, "-m", "llamacpy", "convert", str(folder), "--outfile",
                                      str(ours), "--outtype", outtype], None)):
                        t = timed(cmd, cwd)
                        best[who] = min(best.get(who, t), t)
                same = filecmp.cmp(ref, ours, shallow=False)
                print(f"{label:14s} {outtype:5s} {best['ref'][0]:11.2f} {best['ours'][0]:10.2f} "
                      f"{best['ref'][0] / best['ours'][0]:6.2f} {best['ref'][1]:13.0f} {best['ours'][1]:12.0f} "
                      f"{'yes' if same else 'NO'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
