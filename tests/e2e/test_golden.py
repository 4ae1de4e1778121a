"""The catalog models against llama.cpp's own outputs (tests/data/golden, recorded from llama-server).

Bit-for-bit equality of logits is out of reach without reproducing every SIMD summation order of ggml
(see docs/numerics.md: llama.cpp itself moves these log-probabilities by up to 0.4 nats when only its
attention kernel changes). What is asserted:
- the prompt tokenizes to llama.cpp's ids, exactly;
- free-running greedy decoding gives llama.cpp's tokens, and where it departs from them it does so at a
  near-tie (a position where llama.cpp's own top-2 candidates are within NEAR_TIE nats);
- with the reference tokens fed back, our top-1 is llama.cpp's at every position that is not a near-tie,
  and the top-5 log-probabilities agree: median and 90th percentile of |difference| bounded.
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
NEAR_TIE = 0.6  # nats between llama.cpp's top-1 and top-2
MEDIAN_LOGPROB_ERROR = 0.1  # nats
P90_LOGPROB_ERROR = 0.35


def load_cases(name: str) -> list[dict]:
    return json.loads((GOLDEN / f"{name}.json").read_text())["cases"]


def aligned_top_logprobs(case: dict) -> dict[int, list]:
    """position -> top5: entries merged inside multi-byte characters are matched by their top-1 id."""
    out, j = {}, 0
    for top in case["top_logprobs"]:
        while j < len(case["tokens"]) and case["tokens"][j] != top[0][0]:
            j += 1
        if j == len(case["tokens"]):
            break
        out[j] = top
        j += 1
    return out


def is_near_tie(top: list) -> bool:
    return top[0][1] - top[1][1] < NEAR_TIE


@pytest.fixture(scope="module", params=list(MODELS))
def loaded(request):
    g = GGUFFile(request.getfixturevalue(MODELS[request.param]))
    return request.param, Tokenizer.from_gguf(g), load_model(g)


@pytest.mark.slow
def test_golden(loaded):
    name, tok, model = loaded
    errors, report = [], []
    for case in load_cases(name):
        assert tok.encode(case["prompt"], add_special=case["add_special"], parse_special=True) == case["prompt_tokens"]
        ref, tops = case["tokens"], aligned_top_logprobs(case)
        seq = Sequence(model, model.new_cache(256))
        # teacher-forced: logits at every generated position, the reference tokens fed back
        logits = seq.feed(case["prompt_tokens"] + ref[:-1], all_logits=True)[len(case["prompt_tokens"]) - 1:]
        for pos, top in tops.items():
            lp = log_softmax(logits[pos])
            errors += [abs(float(lp[i]) - v) for i, v in top]
            if not is_near_tie(top):
                assert int(np.argmax(lp)) == ref[pos], f"{case['prompt']!r}: top-1 differs at {pos} (not a near-tie)"
        # free-running greedy decode
        seq.reset()
        out = [int(np.argmax(seq.prefill(case["prompt_tokens"])))]
        while len(out) < len(ref):
            out.append(int(np.argmax(seq.feed([out[-1]]))))
        match = next((i for i, (a, b) in enumerate(zip(out, ref)) if a != b), len(ref))
        report.append((case["prompt"][:24], match, len(ref)))
        if match < len(ref) and match in tops:
            assert is_near_tie(tops[match]), f"{case['prompt']!r}: greedy diverges at {match}, not a near-tie"
    errors = np.array(errors)
    print(f"\n{name}: |dlogprob| median {np.median(errors):.4f} p90 {np.percentile(errors, 90):.4f} "
          f"max {errors.max():.4f}; (prompt, greedy tokens equal, of):", *report, sep="\n  ")
    assert np.median(errors) <= MEDIAN_LOGPROB_ERROR
    assert np.percentile(errors, 90) <= P90_LOGPROB_ERROR
