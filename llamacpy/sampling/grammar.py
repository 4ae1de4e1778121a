"""Constrained output with llguidance: GBNF grammars and JSON schemas as a per-token mask over the logits.

    vocab = GrammarVocab.from_tokenizer(tokenizer)         # once per model (about a second for 151k tokens)
    grammar = vocab.compile(gbnf=text)                     # or json_schema={...}; ValueError when invalid
    constraint = grammar.constraint()                      # one per generation (cheap)
    constraint.mask(logits); ...; constraint.accept(token) # around each draw; `constraint.done` ends it

Token ids only: the tokenizer is consulted once, to build llguidance's view of the vocabulary.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import llguidance
import numpy as np

from ..tokenizer.vocab import Attr

log = logging.getLogger("llamacpy.grammar")

# one layout for generated JSON (`{"a": 1, "b": [2, 3]}`): no free whitespace for a small model to loop in;
# keywords llguidance does not implement (e.g. an unknown "format") are ignored, as llama.cpp does
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
ANY_JSON = {"type": ["object", "array", "string", "number", "integer", "boolean", "null"]}
_SPECIAL_MARK = b"\xff"  # llguidance's prefix for tokens that only match as special tokens (never as text)


class _VocabView:
    """What llguidance.TokenizerWrapper reads: token bytes, EOS/BOS ids, and a text -> ids callable."""

    def __init__(self, tokenizer: Any):
        attrs = tokenizer.vocab.attrs
        self.tokens = [_token_bytes(tokenizer, t, int(attrs[t])) for t in range(tokenizer.n_vocab)]
        eos = tokenizer.eos_id if tokenizer.eos_id is not None else next(iter(sorted(tokenizer.eog_ids)), 0)
        self.eos_token_id = eos
        self.bos_token_id = tokenizer.bos_id
        self.special_token_ids = [t for t in range(tokenizer.n_vocab) if self.tokens[t].startswith(_SPECIAL_MARK)]
        self._encode = tokenizer.encode

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self._encode(text, False, False)


def _token_bytes(tokenizer: Any, token_id: int, attr: int) -> bytes:
    piece = tokenizer.token_to_piece(token_id, special=True)
    if attr & Attr.CONTROL or (attr & Attr.USER_DEFINED and piece.startswith(b"<") and piece.endswith(b">")):
        return _SPECIAL_MARK + piece  # as llguidance's llama.cpp binding marks control tokens
    return piece


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_DATA_KEYS = ("enum", "const", "required", "examples", "default")


def closed_objects(schema: Any) -> Any:
    """A copy of `schema` where objects with `properties` and no `additionalProperties` admit no other keys:
    llama.cpp's reading (JSON Schema's own default would let a model add keys without end)."""
    if isinstance(schema, list):
        return [closed_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: closed_objects(s) for name, s in value.items()}
        elif key in _DATA_KEYS:
            out[key] = value
        else:
            out[key] = closed_objects(value)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class GrammarVocab:
    """llguidance's tokenizer for one model, built once; compiles grammars against it."""

    def __init__(self, lltokenizer: llguidance.LLTokenizer, n_vocab: int):
        self.lltokenizer = lltokenizer
        self.n_vocab = n_vocab

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> GrammarVocab:
        t0 = time.perf_counter()
        view = _VocabView(tokenizer)
        eos = sorted(tokenizer.eog_ids) or [view.eos_token_id]
        lltok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(view), n_vocab=tokenizer.n_vocab, eos_token=eos)
        log.info("grammar vocabulary of %d tokens built in %.0f ms", tokenizer.n_vocab,
                 (time.perf_counter() - t0) * 1e3)
        return cls(lltok, tokenizer.n_vocab)

    def compile(self, gbnf: str | None = None, json_schema: Any = None, lark: str | None = None) -> Grammar:
        """A checked grammar from GBNF text, a JSON schema (a dict; `True` for any JSON value) or llguidance's
        Lark text. Raises ValueError with llguidance's message when it is invalid."""
        if sum(x is not None for x in (gbnf, json_schema, lark)) != 1:
            raise ValueError("give exactly one of a grammar or a JSON schema")
        try:
            if lark is not None:
                spec = llguidance.grammar_from("lark", lark)
            elif gbnf is not None:
                spec = llguidance.grammar_from("gbnf", gbnf)
            else:
                schema = ANY_JSON if json_schema is True or json_schema == {} else closed_objects(json_schema)
                spec = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_LAYOUT)
        except ValueError as e:
            raise ValueError(str(e)) from None
        error = llguidance.LLMatcher.validate_grammar(spec, self.lltokenizer)
        if error:
            raise ValueError(error)
        return Grammar(self, spec)


class Grammar:
    """A validated grammar; `constraint()` starts a fresh matcher for one generation."""

    def __init__(self, vocab: GrammarVocab, spec: str):
        self.vocab, self.spec = vocab, spec

    def constraint(self) -> Constraint:
        return Constraint(llguidance.LLMatcher(self.vocab.lltokenizer, self.spec, log_level=0), self.vocab.n_vocab)


class Constraint:
    """One generation's matcher: which tokens may come next, advanced by each sampled token."""

    def __init__(self, matcher: llguidance.LLMatcher, n_vocab: int):
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        self.matcher = matcher
        self.n_vocab = n_vocab
        self._bits = np.zeros((n_vocab + 31) // 32, dtype=np.int32)  # one bit per token, 1 = allowed

    @property
    def done(self) -> bool:
        """The grammar is complete and admits nothing more (only end-of-generation could follow)."""
        return self.matcher.is_stopped()

    def mask(self, logits: np.ndarray) -> None:
        """Set the logits of every token the grammar does not allow next to -inf, in place."""
        self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        self._raise_on_error()
        allowed = np.unpackbits(self._bits.view(np.uint8), bitorder="little")
        n = min(len(logits), self.n_vocab)
        logits[:n][allowed[:n] == 0] = -np.inf
        logits[n:] = -np.inf  # the model's padding rows past the tokenizer's vocabulary

    def accept(self, token: int) -> None:
        self.matcher.consume_token(token)
        self._raise_on_error()

    def _raise_on_error(self) -> None:
        if self.matcher.is_error():
            raise RuntimeError(f"grammar: {self.matcher.get_error()}")
