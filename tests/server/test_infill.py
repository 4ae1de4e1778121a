"""POST /infill: llama-server's fill-in-the-middle prompt (the builder alone, then qwen2.5-coder end to end,
whole and streamed), its input checks, and the 501 of a model without FIM tokens."""

from __future__ import annotations

import pytest
from serverkit import sse_events

from llamacpy.server.errors import ApiError
from llamacpy.server.infill import SNIPPET, FimTokens, InfillInput, infill_input, infill_tokens

PRE, SUF, MID, REP, SEP, BOS = 1001, 1002, 1003, 1004, 1005, 1
PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


def _encode(text: str, special: bool) -> list[int]:
    return [ord(c) for c in text]  # one token per character


def _build(fim: FimTokens, inp: InfillInput, n_batch: int = 512, n_ctx: int = 1024, n_predict: int = -1,
           **kw) -> list[int]:
    return infill_tokens(fim, inp, _encode, None, n_batch, n_ctx, n_predict, **kw)


def test_prompt_layout_without_repo_tokens():
    fim = FimTokens(PRE, SUF, MID)
    got = _build(fim, InfillInput("ab", "cd", [], "x"))
    assert got == [PRE, ord("a"), ord("b"), SUF, ord("c"), ord("d"), MID, ord("x")]
    assert _build(fim, InfillInput("ab", "cd", [], ""), spm=True) == [SUF, *_encode("cd", 0), PRE,
                                                                        *_encode("ab", 0), MID]
    with_extra = _build(fim, InfillInput("a", "b", [("f.py", "E")], ""))
    assert with_extra == [*_encode(SNIPPET + "E", 0), PRE, ord("a"), SUF, ord("b"), MID]
    assert infill_tokens(fim, InfillInput("a", "b", [], ""), _encode, BOS, 512, 1024, -1)[:2] == [BOS, PRE]


def test_prompt_layout_with_repo_tokens_and_truncation():
    fim = FimTokens(PRE, SUF, MID, REP, SEP)
    got = _build(fim, InfillInput("a", "b", [("u.py", "E")], ""))
    assert got == [REP, *_encode("myproject\n", 0), SEP, *_encode("u.py\n", 0), ord("E"), SEP,
                   *_encode("filename\n", 0), PRE, ord("a"), SUF, ord("b"), MID]
    long = _build(FimTokens(PRE, SUF, MID), InfillInput("p" * 1000 + "P", "S" + "s" * 1000, [], "xy"), n_batch=64)
    assert long == [PRE, *[ord("p")] * 47, ord("P"), SUF, ord("S"), *[ord("s")] * 11, MID, ord("x"), ord("y")]
    # the extra context gets what a slot has beyond a batch and twice n_predict, its end kept
    short = _build(fim, InfillInput("a", "b", [("u.py", "E")], ""), n_batch=64, n_ctx=64 + 2 * 10 + 3,
                   n_predict=10)
    assert short[:4] == [*_encode("me\n", 0), PRE]


@pytest.mark.parametrize("data, message", [
    ({"input_suffix": ""}, '"input_prefix" is required'),
    ({"input_prefix": ""}, '"input_suffix" is required'),
    ({"input_prefix": "", "input_suffix": "", "prompt": [1]}, '"prompt" must be a string'),
    ({"input_prefix": "", "input_suffix": "", "input_extra": {}}, '"input_extra" must be an array'),
    ({"input_prefix": "", "input_suffix": "", "input_extra": [{"filename": "a"}]}, 'a "text" field'),
    ({"input_prefix": "", "input_suffix": "", "input_extra": [{"text": "", "filename": 3}]}, '"filename"'),
])
def test_input_checks(data, message):
    with pytest.raises(ApiError) as e:
        infill_input(data)
    assert e.value.status == 400 and message in str(e.value.message)


def test_missing_fim_tokens_is_501():
    with pytest.raises(ApiError) as e:
        FimTokens(None, None, 7).check()
    assert e.value.status == 501
    assert e.value.message == "Infill is not supported by this model: prefix token is missing. suffix token is missing."


@pytest.fixture(scope="module")
def qwen(start_server, qwen05_path):
    with start_server(qwen05_path, "-np", "2", "-c", "2048").client(timeout=120) as c:
        yield c


@pytest.mark.slow
def test_qwen_fills_the_middle(qwen):
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "temperature": 0, "n_predict": 8, "return_tokens": True}
    r = qwen.post("/infill", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["content"].startswith("a + b"), out["content"]
    assert out["prompt"] == ("<|repo_name|>myproject\n<|file_sep|>filename\n<|fim_prefix|>" + PREFIX
                             + "<|fim_suffix|>" + SUFFIX + "<|fim_middle|>")
    assert out["tokens_predicted"] == 8 == len(out["tokens"]) and out["stop"] is True
    with qwen.stream("POST", "/infill", json={**body, "stream": True}) as s:
        frames = sse_events(s.iter_lines())
    assert frames[-1]["stop"] is True and "".join(f["content"] for f in frames) == out["content"]


@pytest.mark.slow
def test_qwen_prompt_and_extra_context(qwen):
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "temperature": 0, "n_predict": 4, "prompt": "a",
            "input_extra": [{"filename": "util.py", "text": "X = 1\n"}]}
    out = qwen.post("/infill", json=body).json()
    assert out["prompt"].startswith("<|repo_name|>myproject\n<|file_sep|>util.py\nX = 1\n<|file_sep|>filename\n")
    assert out["prompt"].endswith("<|fim_middle|>a") and out["content"].startswith(" + b")
    bad = qwen.post("/infill", json={"input_prefix": PREFIX})
    assert bad.status_code == 400 and bad.json()["error"]["message"] == '"input_suffix" is required'


@pytest.mark.slow
def test_model_without_fim_tokens_gets_501(start_server, smollm2_path):
    with start_server(smollm2_path, "-np", "1", "-c", "512").client() as c:
        r = c.post("/infill", json={"input_prefix": PREFIX, "input_suffix": SUFFIX})
        assert r.status_code == 501
        error = r.json()["error"]
        assert error["type"] == "not_supported_error" and error["message"].startswith("Infill is not supported")
        assert c.get("/health").json() == {"status": "ok"}
