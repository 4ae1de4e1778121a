"""Speculative decoding: the same tokens as decoding alone, with a draft model or any drafter.

The target samples every position of a checked draft with its own sampler, so greedy and seeded outputs
must equal plain decoding token for token; the drafts only change how many forwards it takes.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llamacpy import Llama
from llamacpy.catalog import pull
from llamacpy.engine import GenerationParams, Sequence, StopReason, generate
from llamacpy.engine.speculative import DraftParams, DraftStats, ModelDrafter, compatibility_error
from llamacpy.sampling import Sampler, SamplingParams

CODE_PROMPT = "def merge_sort(items: list[int]) -> list[int]:\n    "
QUIET = {"progress": lambda _msg: None}


def run(llm: Llama, prompt: list[int], n: int, drafter=None, stats: DraftStats | None = None,
        seq: Sequence | None = None, ignore_eos: bool = False, **sampling) -> tuple[list[int], StopReason]:
    """Token ids of one generation from a fresh sequence (the stop token included), and why it stopped."""
    seq = seq or llm.sequence
    seq.reset()
    sampler = Sampler(SamplingParams(**{"temperature": 0.0, **sampling}), llm.model.args.n_vocab)
    steps = list(generate(seq, prompt, sampler, GenerationParams(n_predict=n, ignore_eos=ignore_eos),
                          llm.tokenizer.eog_ids, drafter, stats))
    return [s.token for s in steps], steps[-1].stop


class Oracle:
    """Drafts the known continuation, with every `wrong`-th drafted token replaced (0: never)."""

    def __init__(self, prompt: list[int], reference: list[int], wrong: int = 0):
        self.n_prompt, self.reference, self.wrong = len(prompt), reference, wrong
        self.calls = 0

    def draft(self, context: list[int], n_max: int) -> list[int]:
        self.calls += 1
        out = list(self.reference[len(context) - self.n_prompt:][:n_max])
        if self.wrong:
            for i in range(self.calls % self.wrong, len(out), self.wrong):
                out[i] = (out[i] + 1) % 1000
        return out


# -- rollback and stop conditions, with scripted drafters on the small model -----------------------------

@pytest.fixture(scope="module")
def smol(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=1, **QUIET)


@pytest.mark.slow
def test_rolled_back_sequence_matches_a_fresh_one(smol):
    model = smol.model
    prompt = smol.tokenize("The quick brown fox")
    right, wrong = smol.tokenize(" jumps over the", add_special=False), smol.tokenize(" is red and", add_special=False)
    a = Sequence(model, model.new_cache(64))
    a.feed(prompt + wrong, all_logits=True)
    a.reset(len(prompt))  # the rejected tokens' cache rows are left behind and overwritten
    got = a.feed(right, all_logits=True)
    b = Sequence(model, model.new_cache(64))
    want = b.feed(prompt + right, all_logits=True)[len(prompt):]
    assert a.tokens == b.tokens
    assert np.array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("wrong", [1, 2, 3, 0])
def test_partly_wrong_drafts_give_the_plain_output(smol, wrong):
    prompt = smol.tokenize("Here is a list of fruits: apple, banana,")
    reference, stop = run(smol, prompt, 40)
    stats = DraftStats()
    oracle = Oracle(prompt, reference, wrong)
    assert run(smol, prompt, 40, oracle, stats) == (reference, stop)
    assert stats.n_drafted > 0
    if wrong == 1:
        assert stats.n_accepted == 0
    elif wrong == 0:
        assert stats.n_accepted == stats.n_drafted and oracle.calls <= 3  # 16 + 1 tokens a round
    else:
        assert 0 < stats.n_accepted < stats.n_drafted


@pytest.mark.slow
def test_an_end_of_generation_token_inside_a_draft_ends_it(smol):
    messages = [{"role": "user", "content": "What is 2+2? Answer briefly."}]
    prompt = smol.tokenize(smol.apply_chat_template(messages), parse_special=True)
    reference, stop = run(smol, prompt, 64)
    assert stop == StopReason.EOS and len(reference) < 20
    assert run(smol, prompt, 64, Oracle(prompt, reference + [0] * 8)) == (reference, StopReason.EOS)


@pytest.mark.slow
@pytest.mark.parametrize("n_predict", [1, 2, 5, 17, 18])
def test_n_predict_is_exact_with_drafts(smol, n_predict):
    prompt = smol.tokenize("Once upon a time")
    reference, _ = run(smol, prompt, 64, ignore_eos=True)
    got, stop = run(smol, prompt, n_predict, Oracle(prompt, reference), ignore_eos=True)
    assert got == reference[:n_predict] and stop == StopReason.LENGTH


@pytest.mark.slow
def test_a_full_context_stops_where_plain_decoding_stops(smol):
    prompt = smol.tokenize("Once upon a time")
    seq = Sequence(smol.model, smol.model.new_cache(40))
    reference, stop = run(smol, prompt, -1, seq=seq, ignore_eos=True)
    assert stop == StopReason.CONTEXT
    assert run(smol, prompt, -1, Oracle(prompt, reference), seq=seq, ignore_eos=True) == (reference, stop)
    assert len(seq.tokens) < 40


@pytest.mark.slow
def test_llama_cpp_python_draft_interface(smollm2_path):
    """`draft_model` may be a callable over the token ids so far (llama-cpp-python's LlamaDraftModel)."""
    seen = []

    def lookup(input_ids: np.ndarray) -> np.ndarray:  # proposes a repeat of the last 3 tokens
        seen.append(len(input_ids))
        return np.asarray(input_ids[-3:])

    plain = Llama(smollm2_path, n_ctx=256, n_threads=1, **QUIET)
    drafted = Llama(smollm2_path, n_ctx=256, n_threads=1, draft_model=lookup, **QUIET)
    kw = {"max_tokens": 24, "temperature": 0}
    assert drafted.complete("1, 2, 3, 1, 2, 3, 1, 2,", **kw) == plain.complete("1, 2, 3, 1, 2, 3, 1, 2,", **kw)
    assert seen and drafted.draft_stats.n_drafted > 0


# -- qwen 0.5B drafting for itself: every greedy draft is accepted ---------------------------------------

@pytest.fixture(scope="module")
def qwen(qwen05_path):
    return Llama(qwen05_path, n_ctx=1024, n_threads=1, draft_model=qwen05_path, **QUIET)


@pytest.mark.slow
def test_self_draft_is_accepted_and_changes_nothing(qwen):
    prompt = qwen.tokenize(CODE_PROMPT)
    reference, stop = run(qwen, prompt, 48)
    stats = DraftStats()
    assert run(qwen, prompt, 48, qwen.drafter, stats) == (reference, stop)
    assert stats.n_drafted >= 24 and stats.n_accepted == stats.n_drafted  # a draft below p-min is not made


@pytest.mark.slow
def test_seeded_sampling_gives_the_same_tokens_with_a_draft(qwen):
    """Each position is sampled once by the target's chain (one draw, as without a draft): same seed,
    same tokens; the greedy draft is sometimes rejected at temperature 1.5."""
    stats = DraftStats()
    for text, seed in (("import numpy as np\n\n", 7), ("import numpy as np\n\n", 1234), (CODE_PROMPT, 7)):
        prompt = qwen.tokenize(text)
        kw = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": seed, "repeat_penalty": 1.1}
        reference, stop = run(qwen, prompt, 48, **kw)
        assert run(qwen, prompt, 48, qwen.drafter, stats, **kw) == (reference, stop)
    assert 0 < stats.n_accepted < stats.n_drafted
    assert run(qwen, prompt, 48, qwen.drafter, **{**kw, "seed": 99})[0] != reference


@pytest.mark.slow
def test_grammar_stays_in_charge_with_a_draft(qwen, qwen05_path):
    plain = Llama(qwen05_path, n_ctx=1024, n_threads=1, **QUIET)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    messages = [{"role": "user", "content": "Invent a person as JSON."}]
    kw = {"max_tokens": 48, "temperature": 0.7, "seed": 5, "json_schema": schema}
    assert qwen.chat(messages, **kw) == plain.chat(messages, **kw)


@pytest.mark.slow
def test_draft_p_min_and_n_max_bound_the_drafts(qwen):
    prompt = qwen.tokenize(CODE_PROMPT)
    drafter = ModelDrafter(qwen.drafter.model, 256, DraftParams(n_max=3, p_min=0.0))
    assert len(drafter.draft(prompt, 16)) == 3
    assert drafter.draft(prompt, 2) == drafter.draft(prompt, 3)[:2]
    assert ModelDrafter(qwen.drafter.model, 256, DraftParams(p_min=1.0)).draft(prompt, 16) == []
    assert ModelDrafter(qwen.drafter.model, 256, DraftParams(n_min=20)).draft(prompt, 16) == []


# -- compatibility ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_draft_of_another_vocabulary_is_refused(qwen05_path, smollm2_path):
    with pytest.raises(ValueError, match="cannot draft for .*vocabulary"):
        Llama(qwen05_path, n_ctx=256, draft_model=smollm2_path, **QUIET)


def test_compatibility_checks_special_tokens_and_texts():
    class Vocab:
        def __init__(self, tokens):
            self.type, self.tokens = "bpe", tokens

    class Tok:
        def __init__(self, tokens, bos=0, eos=1):
            self.vocab, self.n_vocab = Vocab(tokens), len(tokens)
            self.bos_id, self.eos_id, self.add_bos, self.add_eos = bos, eos, False, False

    base = [f"t{i}" for i in range(300)]
    assert compatibility_error(Tok(base), Tok(base + ["pad"] * 100)) is None
    assert "EOS" in compatibility_error(Tok(base), Tok(base, eos=2))
    assert "sizes" in compatibility_error(Tok(base), Tok(base[:100]))
    assert "token 7 " in compatibility_error(Tok(base), Tok(base[:7] + ["x"] + base[8:]))


def test_draft_params_are_checked():
    with pytest.raises(ValueError, match="draft-p-min"):
        DraftParams(p_min=1.5).validate()
    with pytest.raises(ValueError, match="draft-max"):
        DraftParams(n_max=-1).validate()


# -- the CLI ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_complete_with_a_draft_prints_the_same_text_and_the_acceptance(qwen05_path):
    args = [sys.executable, "-m", "llamacpy", "complete", "-m", str(qwen05_path), "-p", CODE_PROMPT, "-n", "24",
            "--temp", "0", "-t", "1", "-c", "256"]
    plain = subprocess.run(args, capture_output=True, text=True, check=True)
    drafted = subprocess.run(args + ["-md", str(qwen05_path), "--draft-max", "8"], capture_output=True, text=True,
                             check=True)
    assert drafted.stdout == plain.stdout
    assert "accepted (acceptance 100.0%)" in drafted.stderr


@pytest.mark.slow
def test_complete_refuses_an_incompatible_draft(qwen05_path, smollm2_path):
    r = subprocess.run([sys.executable, "-m", "llamacpy", "complete", "-m", str(qwen05_path), "-p", "hi",
                        "-md", str(smollm2_path)], check=False, capture_output=True, text=True)
    assert r.returncode == 1 and "cannot draft for" in r.stderr and "vocabulary" in r.stderr


# -- the pair the flags are for: qwen2.5-coder 1.5B with the 0.5B drafting -------------------------------

@pytest.fixture(scope="module")
def qwen15():
    return Llama(pull("qwen2.5-coder-1.5b-instruct"), n_ctx=512, draft_model="qwen2.5-coder-0.5b-instruct",
                 **QUIET)


@pytest.mark.slow
def test_greedy_code_is_identical_with_the_small_coder_drafting(qwen15):
    prompt = qwen15.tokenize(CODE_PROMPT)
    reference, stop = run(qwen15, prompt, 64)
    stats = DraftStats()
    assert run(qwen15, prompt, 64, qwen15.drafter, stats) == (reference, stop)
    assert stats.n_accepted > stats.n_drafted / 2
