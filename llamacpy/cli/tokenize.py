"""`llamacpy tokenize -m M -p TEXT`: print token ids (llama-tokenize's --ids output by default)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-p", "--prompt", help="text to tokenize")
    src.add_argument("-f", "--file", help="file to tokenize")
    src.add_argument("--stdin", action="store_true", help="read the text from standard input")
    p.add_argument("--no-bos", action="store_true", help="do not add BOS/EOS even if the model does")
    p.add_argument("--no-parse-special", action="store_true", help="treat special-token text as plain text")
    p.add_argument("--show-pieces", action="store_true", help="print 'id -> piece' lines instead of the id list")


def run(a: argparse.Namespace) -> int:
    from ..catalog import resolve_model
    from ..gguf import GGUFFile
    from ..tokenizer import Tokenizer

    text = a.prompt if a.prompt is not None else (sys.stdin.read() if a.stdin else Path(a.file).read_text(encoding="utf-8"))
    tok = Tokenizer.from_gguf(GGUFFile(resolve_model(a.model)))
    ids = tok.encode(text, add_special=not a.no_bos, parse_special=not a.no_parse_special)
    if a.show_pieces:
        for i in ids:
            print(f"{i:6d} -> {tok.token_to_piece(i).decode('utf-8', errors='replace')!r}")
    else:
        print("[" + ", ".join(map(str, ids)) + "]")
    return 0
