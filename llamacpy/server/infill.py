"""`POST /infill`: llama-server's fill-in-the-middle prompt, built from the model's FIM tokens.

    [FIM_REP]myproject\\n [FIM_SEP]file0\\n extra0 ... [FIM_SEP]filename\\n     (the repo-level pattern, when
    [FIM_PRE] prefix [FIM_SUF] suffix [FIM_MID] prompt                        the model has REP/SEP tokens)

Without FIM_SEP each extra chunk is preceded by "\\n\\n--- snippet ---\\n\\n" instead. The prefix keeps its
last 3/4 of a batch of tokens, the suffix its first quarter (less the prompt), and the extra context what
is left of the slot beyond a batch and twice `n_predict` (its end kept), as llama-server sizes them.
`spm` (llama-server's --spm-infill) puts the suffix part first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

SNIPPET = "\n\n--- snippet ---\n\n"


@dataclass(frozen=True)
class FimTokens:
    pre: int | None
    suf: int | None
    mid: int | None
    rep: int | None = None
    sep: int | None = None

    @classmethod
    def of(cls, ids: dict[str, int | None]) -> FimTokens:
        return cls(ids.get("fim_pre"), ids.get("fim_suf"), ids.get("fim_mid"), ids.get("fim_rep"),
                   ids.get("fim_sep"))

    def check(self) -> None:
        """501 (not_supported_error) naming what is missing, as llama-server words it."""
        missing = "".join(f"{what} token is missing. " for what, tid in
                          (("prefix", self.pre), ("suffix", self.suf), ("middle", self.mid)) if tid is None)
        if missing:
            raise ApiError(501, f"Infill is not supported by this model: {missing}".rstrip())


@dataclass(frozen=True)
class InfillInput:
    prefix: str
    suffix: str
    extra: list[tuple[str, str]]  # (filename, text)
    prompt: str


def infill_input(data: dict[str, Any]) -> InfillInput:
    """The request's infill fields, checked as llama-server checks them."""
    prompt = data.get("prompt", "")
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise bad_request('"prompt" must be a string')
    for key in ("input_prefix", "input_suffix"):
        if key not in data:
            raise bad_request(f'"{key}" is required')
        if not isinstance(data[key], str):
            raise bad_request(f'"{key}" must be a string')
    extra = data.get("input_extra")
    if extra is None:
        extra = []
    if not isinstance(extra, list):
        raise bad_request('"input_extra" must be an array of {"filename": string, "text": string}')
    chunks = []
    for chunk in extra:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("text"), str):
            raise bad_request('extra_context chunk must contain a "text" field with a string value')
        filename = chunk.get("filename", "tmp")
        if not isinstance(filename, str):
            raise bad_request("extra_context chunk's \"filename\" field must be a string")
        chunks.append((filename, chunk["text"]))
    return InfillInput(data["input_prefix"], data["input_suffix"], chunks, prompt)


def infill_tokens(fim: FimTokens, inp: InfillInput, encode: Callable[[str, bool], list[int]], bos: int | None,
                  n_batch: int, n_ctx: int, n_predict: int, spm: bool = False) -> list[int]:
    """The prompt's token ids. `encode(text, parse_special)` tokenizes without BOS/EOS; `bos` is prepended
    when given (the model adds one)."""
    prefix, suffix = encode(inp.prefix, False), encode(inp.suffix, False)
    prompt = encode(inp.prompt, True)
    extra: list[int] = []
    if fim.rep is not None:
        extra += [fim.rep, *encode("myproject\n", False)]
    for filename, text in inp.extra:
        extra += [fim.sep, *encode(filename + "\n", False)] if fim.sep is not None else encode(SNIPPET, False)
        extra += encode(text, False)
    if fim.sep is not None:
        extra += [fim.sep, *encode("filename\n", False)]
    n_prefix = min(len(prefix), 3 * (n_batch // 4))
    n_suffix = min(len(suffix), max(0, n_batch // 4 - (2 + len(prompt))))
    n_extra = min(max(0, n_ctx - n_batch - 2 * n_predict), len(extra))
    pre_part = [fim.pre, *prefix[len(prefix) - n_prefix:]]
    suf_part = [fim.suf, *suffix[:n_suffix]]
    first, second = (suf_part, pre_part) if spm else (pre_part, suf_part)
    head = [bos] if bos is not None else []
    return [*extra[len(extra) - n_extra:], *head, *first, *second, fim.mid, *prompt]
