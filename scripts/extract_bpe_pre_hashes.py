#!/usr/bin/env python3
"""Copy llama.cpp's BPE pre-tokenizer table (chkhsh -> tokenizer.ggml.pre) into llamacpy/convert/bpe_pre.json.

    python3 scripts/extract_bpe_pre_hashes.py LLAMA_CPP_DIR

The table lives in conversion/base.py's get_vocab_base_pre (generated there by convert_hf_to_gguf_update.py):
each entry is `if chkhsh == "<sha256>":` followed by `res = "<name>"`. Its check text is copied too.
"""

import ast
import json
import re
import sys
from pathlib import Path

SOURCE = "llama.cpp 0c1e570 (llama-cpp-python 0.3.36 sdist) conversion/base.py get_vocab_base_pre"


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    src = (root / "conversion" / "base.py").read_text(encoding="utf-8")
    body = src[src.index("def get_vocab_base_pre"):src.index("Marker: End get_vocab_base_pre")]
    chktxt = ast.literal_eval(re.search(r"chktxt = ('.*')\n", body).group(1))
    table = {}
    for h, name in re.findall(r'if chkhsh == "([0-9a-f]{64})":\n(?:\s*#[^\n]*\n)*\s*res = "([^"]+)"', body):
        table[h] = name  # the ifs run in turn, so a hash listed twice takes its last name
    out = Path(__file__).resolve().parent.parent / "llamacpy" / "convert" / "bpe_pre.json"
    out.write_text(json.dumps({"source": SOURCE,
                               "chktxt": chktxt, "hashes": table}, indent=1, ensure_ascii=False) + "\n")
    print(f"{out}: {len(table)} hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
