"""Hugging Face model folders -> GGUF (llama.cpp's convert_hf_to_gguf.py), one module per architecture.

>>> convert_hf("all-MiniLM-L6-v2/", "minilm.gguf", outtype="f16")

The architecture comes from config.json's `architectures`; metadata is collected with the `gguf` package's
GGUFWriter API under llama.cpp's key and tensor names (so llama.cpp reads the files too) and the file is
streamed out by the project's writer, one tensor at a time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .common import OUTTYPES, ConvertError

# bumped when a converter's output changes, so that `pull`'s cached conversions are redone (catalog.py)
CONVERT_VERSION = 2

# config.json architectures -> "module" (it defines `convert(folder, config, out, outtype, progress)`) or
# "module:Class" (a text_model.TextModel family, converted by text_model.convert)
CONVERTERS = {
    "BertModel": "bert:Bert", "BertForMaskedLM": "bert:Bert", "BertForSequenceClassification": "bert:Bert",
    "LlamaForCausalLM": "llama:Llama", "LLaMAForCausalLM": "llama:Llama", "MistralForCausalLM": "llama:Llama",
    "Qwen2ForCausalLM": "qwen:Qwen2", "Qwen3ForCausalLM": "qwen:Qwen3",
    "Gemma2ForCausalLM": "gemma:Gemma2", "Gemma3ForCausalLM": "gemma:Gemma3",
    "Phi3ForCausalLM": "phi3:Phi3",
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise ConvertError(f"{folder}: not a folder (expected a Hugging Face model folder)")
    if not path.is_file():
        raise ConvertError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConvertError(f"{path}: not valid JSON ({e})") from None


def convert_hf(folder: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16",
               progress: Callable[[str], None] = _log) -> Path:
    """Convert the model in `folder` to the GGUF file `out` (written whole or not at all); returns its path."""
    import importlib

    folder, out = Path(folder), Path(out)
    if outtype not in OUTTYPES:
        raise ConvertError(f"--outtype must be one of {', '.join(OUTTYPES)}, not {outtype!r}")
    config = read_config(folder)
    archs = config.get("architectures") or []
    known = [a for a in archs if a in CONVERTERS]
    if not known:
        raise ConvertError(f"{folder}: architecture {', '.join(archs) or config.get('model_type', '?')} is not "
                           f"supported (supported: {', '.join(CONVERTERS)})")
    module_name, _, family = CONVERTERS[known[0]].partition(":")
    module = importlib.import_module(f".{module_name}", __name__)
    tmp = out.with_name(out.name + ".part")
    try:
        if family:
            from .text_model import convert

            convert(getattr(module, family), folder, config, tmp, outtype, progress)
        else:
            module.convert(folder, config, tmp, outtype, progress)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


__all__ = ["CONVERTERS", "CONVERT_VERSION", "OUTTYPES", "ConvertError", "convert_hf"]
