"""`llamacpy convert FOLDER`: a Hugging Face model folder to GGUF (llama.cpp's convert_hf_to_gguf.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..convert import CONVERTERS, OUTTYPES

    p.add_argument("model", help=f"Hugging Face model folder (config.json, model.safetensors, tokenizer); "
                                 f"architectures: {', '.join(CONVERTERS)}")
    p.add_argument("--outfile", help="GGUF file to write (default: FOLDER/<name>-<outtype>.gguf)")
    p.add_argument("--outtype", choices=OUTTYPES, default="f16",
                   help="type of the weight matrices (default: f16; vectors and norms stay f32)")


def run(a: argparse.Namespace) -> int:
    from ..convert import ConvertError, convert_hf

    folder = Path(a.model)
    out = Path(a.outfile) if a.outfile else folder / f"{folder.resolve().name}-{a.outtype}.gguf"
    try:
        print(convert_hf(folder, out, a.outtype))
    except ConvertError as e:
        raise ValueError(str(e)) from None
    return 0
