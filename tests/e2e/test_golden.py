"""The catalog models against llama.cpp's own outputs (tests/data/golden, recorded from llama-server).

For each case: the prompt tokenizes to llama.cpp's ids; greedy decoding reproduces llama.cpp's tokens;
with the reference tokens fed back (teacher forcing), the top-5 log-probabilities agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llamacpy.engine import Sequence
from llamacpy.gguf import GGUFFile
from llamacpy.models import load_model
from llamacpy.sampling.chain import log_softmax
from llamacpy.tokenizer import Tokenizer

GOLDEN = Path(__file__).parent.parent / "data" / "golden"
MODELS = {
    "smollm2-135m-instruct-q4_1": "smollm2_path",
    "qwen2.5-coder-0.5b-instruct-q4_k_m": "qwen05_path",
    "gemma-3-270m-q4_k_m": "gemma_path",
}
MIN_GREEDY_MATCH = 16  # positions that must match in every case (or the whole reference when shorter)
LOGPROB_TOLERANCE = 0.05  # nats


def load_cases(name: str) -> list[dict]:
    return json.loads((GOLDEN / f"{name}.json").read_text())["cases"]


def aligned_top_logprobs(case: dict) -> list[tuple[int, list]]:
    """(position, top5) pairs: entries merged inside multi-byte characters are matched by their top-1 id."""
    out, j = [], 0
    for top in case["top_logprobs"]:
        while j < len(case["tokens"]) and case["tokens"][j] != top[0][0]:
            j += 1
        if j == len(case["tokens"]):
            break
        out.append((j, top))
        j += 1
    return out


@pytest.fixture(scope="module", params=list(MODELS))
def loaded(request):
    g = GGUFFile(request.getfixturevalue(MODELS[request.param]))
    return request.param, Tokenizer.from_gguf(g), load_model(g)


@pytest.mark.slow
def test_golden(loaded):
    name, tok, model = loaded
    report = []
    for case in load_cases(name):
        assert tok.encode(case["prompt"], add_special=case["add_special"], parse_special=True) == case["prompt_tokens"]
        ref = case["tokens"]
        seq = Sequence(model, model.new_cache(256))
        # teacher-forced pass: logits at every generated position in one batch
        logits = seq.feed(case["prompt_tokens"] + ref[:-1], all_logits=True)[len(case["prompt_tokens"]) - 1:]
        # free-running greedy decode
        seq.reset()
        out = [int(np.argmax(seq.prefill(case["prompt_tokens"])))]
        while len(out) < len(ref):
            out.append(int(np.argmax(seq.feed([out[-1]]))))
        match = next((i for i, (a, b) in enumerate(zip(out, ref)) if a != b), len(ref))
        worst = 0.0
        for pos, top in aligned_top_logprobs(case):
            lp = log_softmax(logits[pos])
            worst = max(worst, max(abs(float(lp[i]) - v) for i, v in top))
        report.append((case["prompt"][:24], match, len(ref), round(worst, 4)))
    print(f"\n{name}: (prompt, greedy match, of, max |dlogprob|)", *report, sep="\n  ")
    for prompt, match, n, worst in report:
        assert match >= min(MIN_GREEDY_MATCH, n), f"{prompt!r}: greedy tokens diverge at {match}"
        assert worst <= LOGPROB_TOLERANCE, f"{prompt!r}: top-5 logprob off by {worst:.3f} nats"
