"""`llamacpy convert FOLDER`: a Hugging Face model folder to GGUF (llama.cpp's convert_hf_to_gguf.py, its flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# convert_hf_to_gguf.py flags about how it holds memory: llamacpy always streams one tensor at a time
MEMORY_FLAGS = ("--use-temp-file", "--no-lazy")
# its flags for what llamacpy does not convert: refused with the reason (the last two take a value)
REFUSED = {
    "--bigendian": "big-endian files are not written",
    "--remote": "only local folders are read (no network access to the hub)",
    "--mmproj": "multimodal projectors are not converted",
    "--mistral-format": "Mistral's consolidated format is not read (use the Hugging Face folder)",
    "--split-max-tensors": "split output is not written",
    "--split-max-size": "split output is not written",
}
VALUED = ("--split-max-tensors", "--split-max-size")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..convert import CONVERTERS, OUTTYPES

    p.add_argument("model", nargs="?", help="Hugging Face model folder (config.json, model.safetensors, tokenizer)")
    p.add_argument("--outfile", type=Path,
                   help="file to write ({ftype} is replaced by the type), or a folder; default: the model's folder, "
                        "named as llama.cpp names it (Name-Size-F16.gguf)")
    p.add_argument("--outtype", choices=OUTTYPES, default="auto",
                   help="type of the weight matrices: f32, f16, bf16, q8_0, or auto (default) for the checkpoint's "
                        "16-bit type; vectors and norms stay f32")
    p.add_argument("--vocab-only", action="store_true", help="write only the metadata and the vocabulary")
    p.add_argument("--model-name", help="the model's name (general.name and the default file name)")
    p.add_argument("--metadata", type=Path, help="a JSON file of general.* overrides (gguf-py's metadata override)")
    p.add_argument("--dry-run", action="store_true", help="print each tensor's name, shape and type; write nothing")
    p.add_argument("--print-supported-models", action="store_true",
                   help=f"list the architectures ({len(CONVERTERS)}) and exit")
    p.add_argument("--verbose", action="store_true", help="accepted (the progress lines are always printed)")
    for flag in MEMORY_FLAGS:
        p.add_argument(flag, action="store_true", help="accepted: llamacpy always streams one tensor at a time")
    for flag, why in REFUSED.items():
        p.add_argument(flag, **({} if flag in VALUED else {"action": "store_true"}), help=f"refused: {why}")


def run(a: argparse.Namespace) -> int:
    from ..convert import CONVERTERS, ConvertError, convert_hf

    if a.print_supported_models:
        print("\n".join(CONVERTERS))
        return 0
    for flag, why in REFUSED.items():
        value = getattr(a, flag.lstrip("-").replace("-", "_"))
        if value not in (None, False, "0", 0):
            raise ValueError(f"{flag}: {why}")
    if a.model is None:
        raise ValueError("a Hugging Face model folder is required")
    for flag in MEMORY_FLAGS:
        if getattr(a, flag.lstrip("-").replace("-", "_")):
            print(f"llamacpy convert: {flag} changes nothing here: tensors are always streamed one at a time",
                  file=sys.stderr)
    try:
        print(convert_hf(Path(a.model), a.outfile, a.outtype, model_name=a.model_name, metadata=a.metadata,
                         vocab_only=a.vocab_only, dry_run=a.dry_run))
    except ConvertError as e:
        raise ValueError(str(e)) from None
    return 0
