#!/usr/bin/env python3
"""Record llama-quantize's K-quant files (and llama-imatrix's importance matrix) into tests/data/llama_quantize/.

    LCPP_BIN=/path/to/build-noamx/bin python3 scripts/record_llama_quantize.py

llama.cpp 0c1e570 (shared/tools/build-llamacpp.sh). For each catalog model below:
  1. `llama-quantize --allow-requantize MODEL f16.gguf F16` (its sha256 is recorded: the test rebuilds it with
     llamacpy and checks it is the same file before going on);
  2. `llama-quantize f16.gguf out.gguf TYPE 2` for each file type: the output's sha256 and every tensor's type;
  3. for smollm2, `llama-imatrix -m f16.gguf -f GPL-2 -c 256 -b 256 -t 2` (the file is kept beside the JSON, and
     its `--show-statistics` tables beside it), the
     same file types with `--imatrix`, and `llama-perplexity -f GPL-3 -c 256 -b 256 --chunks 8` of the Q4_K_M
     files with and without it.
tests/e2e/test_quantize_kquants.py replays steps 1-2 with `llamacpy quantize` and compares the bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from llamacpy.catalog import file_sha256 as sha256
from llamacpy.gguf import GGUFFile
from llamacpy.quantize.ftypes import type_name

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/data/llama_quantize"
COMMIT = "0c1e570"
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
CALIBRATION, EVAL = Path("/usr/share/common-licenses/GPL-2"), Path("/usr/share/common-licenses/GPL-3")
ALL = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL",
       "IQ4_XS", "Q4_0", "Q5_1"]  # (Q2_K_S needs an imatrix: recorded with one)
MODELS = {  # catalog file -> (short name, file types, file types with the imatrix)
    "SmolLM2-135M-Instruct.Q4_1.gguf": ("smollm2", ALL, ["Q4_K_M", "Q2_K_S", "Q3_K_M", "IQ4_XS", "Q4_0", "Q6_K"]),
    "qwen2.5-coder-0.5b-instruct.gguf": ("qwen05", ["Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_NL"], []),
    "gemma-3-270m-q4_k_m.gguf": ("gemma3", ["Q4_K_M", "Q5_K_S"], []),
}


def run(bin_dir: Path, tool: str, *args: str) -> str:
    # in OUT, so that --imatrix NAME.imatrix.gguf is written into the output's quantize.imatrix.file as is
    r = subprocess.run([str(bin_dir / tool), *args], capture_output=True, text=True, check=False, cwd=OUT,
                       env={**os.environ, "LD_LIBRARY_PATH": str(bin_dir)})
    if r.returncode:
        raise SystemExit(f"{tool} {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout + r.stderr


def quantized(bin_dir: Path, f16: Path, out: Path, ftype: str, imatrix: str | None = None) -> dict:
    run(bin_dir, "llama-quantize", *(["--imatrix", imatrix] if imatrix else []), str(f16), str(out), ftype, "2")
    g = GGUFFile(out)
    types = {n: type_name(t.type) for n, t in g.tensors.items()}
    g.close()
    return {"sha256": sha256(out), "types": types}


def record_statistics(bin_dir: Path, model: Path, imatrix: str) -> Path:
    """`llama-imatrix --in-file FILE --show-statistics`'s tables, kept beside the file as FILE's stem +
    .statistics.txt (the log lines before the tables dropped). -m is required, not loaded."""
    out = OUT / imatrix.replace(".gguf", ".statistics.txt")
    for _ in range(20):  # llama.cpp's log thread may lose the last lines at exit: run until they are all there
        text = run(bin_dir, "llama-imatrix", "-m", str(model), "--in-file", imatrix, "--show-statistics")
        text = re.sub(r"(?m)^\d+\.\d+\.\d+\.\d+ I ", "", text)  # the logger's timestamp and level prefixes
        text = text[text.index("\nComputing statistics for"):]
        layers = re.search(r"per layer \((\d+) layers\)", text)
        if layers and re.search(rf"(?m)^ *{int(layers.group(1)) - 1}\t.*\n\n$", text):
            out.write_text(text)
            return out
    raise SystemExit("llama-imatrix --show-statistics never printed its whole tables")


def main() -> None:
    bin_dir = Path(os.environ["LCPP_BIN"])
    OUT.mkdir(parents=True, exist_ok=True)
    for file, (short, ftypes, with_imatrix) in MODELS.items():
        model = CACHE / file
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            f16 = d / "f16.gguf"
            run(bin_dir, "llama-quantize", "--allow-requantize", str(model), str(f16), "F16")
            rec = {"llama_cpp_commit": COMMIT, "model": file, "model_sha256": sha256(model),
                   "f16_command": f"llama-quantize --allow-requantize {file} f16.gguf F16", "f16_sha256": sha256(f16),
                   "command": "llama-quantize f16.gguf out.gguf TYPE 2", "files": {}}
            for ft in ftypes:
                rec["files"][ft] = quantized(bin_dir, f16, d / "out.gguf", ft)
                print(f"{short} {ft}: {rec['files'][ft]['sha256'][:16]}")
            if with_imatrix:
                imatrix = OUT / f"{short}.imatrix.gguf"
                log = run(bin_dir, "llama-imatrix", "-m", str(f16), "-f", str(CALIBRATION), "-o",
                          str(d / "imatrix.gguf"), "-c", "256", "-b", "256", "-t", "2")
                shutil.copy(d / "imatrix.gguf", imatrix)
                rec["imatrix"] = {"command": f"llama-imatrix -m f16.gguf -f {CALIBRATION} -c 256 -b 256 -t 2",
                                  "quantize_command": f"llama-quantize --imatrix {imatrix.name} f16.gguf out.gguf TYPE 2",
                                  "calibration_sha256": sha256(CALIBRATION), "file": imatrix.name,
                                  "sha256": sha256(imatrix), "files": {},
                                  "ppl": float(re.search(r"Final estimate: PPL = (\d+\.\d+)", log).group(1))}
                run(bin_dir, "llama-imatrix", "-m", str(f16), "--in-file", imatrix.name, "--in-file", imatrix.name,
                    "-o", str(d / "combined.gguf"))
                rec["imatrix"]["combined"] = {
                    "command": f"llama-imatrix -m f16.gguf --in-file {imatrix.name} --in-file {imatrix.name} "
                               "-o combined.gguf", "sha256": sha256(d / "combined.gguf")}
                record_statistics(bin_dir, f16, imatrix.name)
                for ft in with_imatrix:
                    rec["imatrix"]["files"][ft] = quantized(bin_dir, f16, d / "out.gguf", ft, imatrix.name)
                    print(f"{short} {ft} --imatrix: {rec['imatrix']['files'][ft]['sha256'][:16]}")
                ppl = {}
                for label, im in (("plain", None), ("imatrix", imatrix.name)):
                    quantized(bin_dir, f16, d / "q.gguf", "Q4_K_M", im)
                    text = run(bin_dir, "llama-perplexity", "-m", str(d / "q.gguf"), "-f", str(EVAL), "-c", "256",
                               "-b", "256", "--chunks", "8", "-t", "2")
                    ppl[label] = float(re.search(r"Final estimate: PPL = (\d+\.\d+)", text).group(1))
                rec["perplexity_q4_k_m"] = {"command": f"llama-perplexity -f {EVAL} -c 256 -b 256 --chunks 8",
                                            "eval_sha256": sha256(EVAL), **ppl}
                print(f"{short} Q4_K_M perplexity: {ppl}")
        (OUT / f"{short}.json").write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
