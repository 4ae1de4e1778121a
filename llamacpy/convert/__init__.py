"""Hugging Face model folders -> GGUF (llama.cpp's convert_hf_to_gguf.py), one module per architecture.

>>> convert_hf("all-MiniLM-L6-v2/", "minilm.gguf", outtype="f16")

The architecture comes from config.json's `architectures`; metadata is collected with the `gguf` package's
GGUFWriter API under llama.cpp's key and tensor names (so llama.cpp reads the files too) and the file is
streamed out by the project's writer, one tensor at a time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from .common import OUTTYPES, ConvertError, read_json

# bumped when a converter's output changes, so that `pull`'s cached conversions are redone (catalog.py)
CONVERT_VERSION = 2

# config.json architectures -> "module:Class", a text_model.TextModel family (converted by text_model.convert)
CONVERTERS = {
    "BertModel": "bert:Bert", "BertForMaskedLM": "bert:Bert", "BertForSequenceClassification": "bert:Bert",
    "LlamaForCausalLM": "llama:Llama", "LLaMAForCausalLM": "llama:Llama", "MistralForCausalLM": "llama:Llama",
    "MixtralForCausalLM": "llama:Llama",
    "Qwen2ForCausalLM": "qwen:Qwen2", "Qwen3ForCausalLM": "qwen:Qwen3",
    "Qwen2MoeForCausalLM": "qwen:Qwen2Moe", "Qwen3MoeForCausalLM": "qwen:Qwen3Moe",
    "Gemma2ForCausalLM": "gemma:Gemma2", "Gemma3ForCausalLM": "gemma:Gemma3",
    "Phi3ForCausalLM": "phi3:Phi3",
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_config(folder: Path) -> dict:
    if not folder.is_dir():
        raise ConvertError(f"{folder}: not a folder (expected a Hugging Face model folder)")
    if not (folder / "config.json").is_file():
        raise ConvertError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    return read_json(folder / "config.json")


def convert_hf(folder: str | os.PathLike, out: str | os.PathLike | None = None, outtype: str = "auto",
               progress: Callable[[str], None] = _log, **options) -> Path:
    """Convert the model in `folder` to GGUF (written whole or not at all); returns the file's path.

    `out`: a file (`{ftype}` in its name is filled in) or a folder for a file named as llama.cpp names it
    (default: the model's folder). `outtype`: f32, f16, bf16, q8_0 or auto (the checkpoint's 16-bit type).
    `options`: model_name, metadata (an override file), vocab_only, dry_run, as convert_hf_to_gguf.py's flags."""
    import importlib

    from .text_model import convert

    folder = Path(folder)
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
    return convert(getattr(module, family), folder, config, None if out is None else Path(out), outtype, progress,
                   **options)


__all__ = ["CONVERTERS", "CONVERT_VERSION", "OUTTYPES", "ConvertError", "convert_hf"]
