"""The Python API with the real default model."""

from __future__ import annotations

import pytest

from llamacpy import Llama


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, progress=lambda _msg: None)


@pytest.mark.slow
def test_complete_greedy_matches_llama_cpp_start(llm):
    # llama.cpp's greedy continuation starts " Paris.\n\nThe"
    assert llm.complete("The capital of France is", max_tokens=4, temperature=0).startswith(" Paris.")


@pytest.mark.slow
def test_streamed_pieces_join_to_the_whole_text(llm):
    whole = llm.complete("Once upon a time", max_tokens=20, temperature=0)
    pieces = list(llm.complete("Once upon a time", max_tokens=20, temperature=0, stream=True))
    assert "".join(pieces) == whole and len(pieces) > 1


@pytest.mark.slow
def test_chat_uses_template_and_stops_at_end_of_turn(llm):
    messages = [{"role": "user", "content": "What is 2+2? Answer briefly."}]
    assert llm.chat(messages, max_tokens=48, temperature=0) == "The answer is 4."  # then <|im_end|>
    tokens = llm.tokenize(llm.apply_chat_template(messages), parse_special=True)
    assert list(llm.stream_tokens(tokens, 48, temperature=0))[-1].finish_reason == "stop"


@pytest.mark.slow
def test_stop_strings_cut_the_text(llm):
    text = llm.complete("1, 2, 3, 4,", max_tokens=24, temperature=0, stop=[" 7"])
    assert " 7" not in text and "6" in text


@pytest.mark.slow
def test_seeded_sampling_repeats(llm):
    kw = {"max_tokens": 16, "temperature": 1.0, "seed": 7}
    assert llm.complete("The weather today", **kw) == llm.complete("The weather today", **kw)


@pytest.mark.slow
def test_prompt_longer_than_context_is_a_clear_error(llm):
    with pytest.raises(ValueError, match="does not fit the context"):
        llm.complete("word " * 600, max_tokens=1)


@pytest.mark.slow
def test_grammar_and_json_schema_constrain_the_reply(llm):
    import json

    question = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    reply = llm.chat(question, max_tokens=16, temperature=0.8, seed=3, grammar='root ::= ("yes" | "no")')
    assert reply in ("yes", "no")
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    tokens = llm.tokenize("A JSON object with a number n:\n")
    pieces = list(llm.stream_tokens(tokens, 64, temperature=0, json_schema=schema))
    assert isinstance(json.loads("".join(p.text for p in pieces))["n"], int)
    assert pieces[-1].finish_reason == "stop"
    with pytest.raises(ValueError, match="foo"):
        llm.complete("x", grammar="root ::= foo")
