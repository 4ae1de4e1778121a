"""Reasoning split out of thinking models' replies (llama-server's --reasoning-format), whole and streamed."""

from __future__ import annotations

import random

import pytest

from llamacpy.server.reasoning import ReasoningStream, Thinking, split

DEEPSEEK = Thinking()
OPENED = Thinking(forced_open=True)


@pytest.mark.parametrize("think, text, reasoning, content", [
    (DEEPSEEK, "<think>\nLet me add.\n</think>\n\nIt is 4.", "Let me add.", "It is 4."),
    (DEEPSEEK, "  <think>a</think>b", "a", "b"),
    (DEEPSEEK, "It is 4.", None, "It is 4."),
    (DEEPSEEK, "x <think>a</think>", None, "x <think>a</think>"),  # thinking only at the start
    (DEEPSEEK, "<think>cut off mid-thought", "cut off mid-thought", ""),
    (OPENED, "Let me add.\n</think>\n\nIt is 4.", "Let me add.", "It is 4."),
    (OPENED, "</think>It is 4.", "", "It is 4."),
    (Thinking(legacy=True), "<think>a</think> b", "a", "<think>a</think> b"),
    (Thinking(legacy=True, forced_open=True), "a</think> b", "a", "<think>a</think> b"),
    (None, "<think>a</think>b", None, "<think>a</think>b"),
])
def test_split(think, text, reasoning, content):
    assert split(text, think) == (reasoning, content)


def test_format_and_forced_open_from_the_prompt():
    assert Thinking.of("none", "x") is None
    assert Thinking.of("auto", "<|Assistant|><think>\n") == Thinking(forced_open=True)
    assert Thinking.of("deepseek-legacy", "<|im_start|>assistant\n") == Thinking(legacy=True)
    with pytest.raises(ValueError, match="unknown reasoning format"):
        Thinking.of("nope", "")


def _streamed(think, text, rng):
    stream, out, i = ReasoningStream(think), [], 0
    while i < len(text):
        n = rng.randint(1, 4)
        out += stream.feed(text[i:i + n])
        i += n
    out += stream.finish()
    reasoning = "".join(t for k, t in out if k == "reasoning")
    content = "".join(t for k, t in out if k == "content")
    return reasoning, content, out


@pytest.mark.parametrize("think", [DEEPSEEK, OPENED, Thinking(legacy=True), Thinking(legacy=True, forced_open=True)])
@pytest.mark.parametrize("text", ["<think>\nStep one.\n\nStep two.\n</think>\n\nThe answer is <b>4</b>.",
                                  "\n<think>a < b </thin and </think>x", "<thin", "Plain reply, no thoughts.",
                                  "<think>never closed \n", "Done.</think>  After"])
def test_the_stream_gives_what_the_whole_split_gives(think, text):
    rng = random.Random(7)
    for _ in range(20):
        reasoning, content, pieces = _streamed(think, text, rng)
        whole_reasoning, whole_content = split(text, think)
        assert reasoning == (whole_reasoning or "") and content == whole_content, pieces
        assert all(t for _k, t in pieces)  # no empty deltas
