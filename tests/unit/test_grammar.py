"""Constrained sampling with llguidance over a real vocabulary (smollm2's 49k tokens)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.sampling import Sampler, SamplingParams
from llamacpy.sampling.grammar import GrammarVocab, closed_objects
from llamacpy.tokenizer import Tokenizer

SCHEMA = {"type": "object", "required": ["name", "age", "color"],
          "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
                         "color": {"enum": ["red", "green", "blue"]}}}


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    return Tokenizer.from_gguf(GGUFFile(smollm2_path))


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return GrammarVocab.from_tokenizer(tokenizer)


def _generate(tokenizer, grammar, seed: int, n_max: int = 200) -> str:
    """Draw from random logits under the grammar until it is done or an end-of-generation token comes."""
    rng = np.random.default_rng(seed)
    sampler = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed),
                      tokenizer.n_vocab, grammar.constraint())
    out = []
    for _ in range(n_max):
        token = sampler.sample(rng.standard_normal(tokenizer.n_vocab).astype(np.float32) * 3)
        if token in tokenizer.eog_ids:
            break
        out.append(token)
        if sampler.constraint_done:
            break
    return tokenizer.decode(out)


def test_choice_grammar_allows_only_its_words(tokenizer, vocab):
    grammar = vocab.compile(gbnf='root ::= ("yes" | "no")')
    assert {_generate(tokenizer, grammar, seed) for seed in range(8)} <= {"yes", "no"}


def test_mask_leaves_exactly_the_allowed_tokens(tokenizer, vocab):
    constraint = vocab.compile(gbnf='root ::= "yes"').constraint()
    logits = np.zeros(tokenizer.n_vocab, np.float32)
    constraint.mask(logits)
    allowed = {tokenizer.decode([int(t)]) for t in np.nonzero(np.isfinite(logits))[0]}
    assert allowed and all("yes".startswith(a) for a in allowed)


def test_json_schema_output_parses_and_matches(tokenizer, vocab):
    grammar = vocab.compile(json_schema=SCHEMA)
    for seed in range(3):
        value = json.loads(_generate(tokenizer, grammar, seed, n_max=400))
        assert set(value) == {"name", "age", "color"}
        assert isinstance(value["name"], str) and len(value["name"]) <= 12
        assert isinstance(value["age"], int) and value["color"] in ("red", "green", "blue")


def test_invalid_grammar_and_schema_raise_with_llguidance_message(vocab):
    with pytest.raises(ValueError, match="foo"):
        vocab.compile(gbnf="root ::= foo")
    with pytest.raises(ValueError, match="nonsense"):
        vocab.compile(json_schema={"type": "nonsense"})


def test_closed_objects_is_llama_cpp_default_and_keeps_data():
    schema = {"type": "object", "properties": {"properties": {"type": "object", "properties": {"x": {}}},
                                               "enum": {"enum": [{"properties": 1}]}},
              "$defs": {"d": {"properties": {"y": {}}, "additionalProperties": True}}}
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["properties"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]  # a map of names, not a schema
    assert closed["properties"]["enum"]["enum"] == [{"properties": 1}]
    assert closed["$defs"]["d"]["additionalProperties"] is True
    assert "additionalProperties" not in schema  # the input is left alone
