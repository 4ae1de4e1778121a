"""Thinking models' replies split into reasoning and content, as llama-server's `--reasoning-format`:

    none             the reply as generated, thoughts left in `content`
    deepseek, auto   the thoughts (between <think> and </think>) in `reasoning_content`, the rest in `content`
    deepseek-legacy  both: `content` keeps the tags and thoughts, `reasoning_content` has the thoughts

A reply is read as thinking when it starts with <think> (after whitespace), or when the prompt already opened it
(templates such as DeepSeek-R1's end the generation prompt with "<think>\\n": llama.cpp's "thinking forced
open"); a reply cut off before </think> is all reasoning. Reasoning is stripped of surrounding whitespace, content
of leading whitespace, whole or streamed alike (the stream holds back what could still be a tag or trailing space).
Tags of other families (Command R's <|START_THINKING|>, gpt-oss channels) are not parsed yet.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"
FORMATS = ("none", "deepseek", "deepseek-legacy", "auto")


@dataclass(frozen=True)
class Thinking:
    """How one request's reply is split (None where the format is `none`)."""

    legacy: bool = False       # deepseek-legacy: content keeps the raw text
    forced_open: bool = False  # the prompt ends inside <think>

    @classmethod
    def of(cls, fmt: str, prompt: str) -> Thinking | None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown reasoning format {fmt!r}: one of {', '.join(FORMATS)}")
        if fmt == "none":
            return None
        return cls(legacy=fmt == "deepseek-legacy", forced_open=prompt.rstrip().endswith(OPEN))


def split(text: str, think: Thinking | None) -> tuple[str | None, str]:
    """(reasoning or None, content) of a whole reply."""
    if think is None:
        return None, text
    body = text
    if not think.forced_open:
        if not text.lstrip().startswith(OPEN):
            return None, text
        body = text.lstrip()[len(OPEN):]
    reasoning, closed, rest = body.partition(CLOSE)
    content = (OPEN + text if think.forced_open else text) if think.legacy else rest.lstrip() if closed else ""
    return reasoning.strip(), content


class ReasoningStream:
    """`split` for a reply arriving in pieces: feed() returns [("reasoning" | "content", text), ...]."""

    def __init__(self, think: Thinking):
        self.think = think
        self.state = "reasoning" if think.forced_open else "start"
        self.held = ""          # text not yet given out
        self.lead = True        # at the start of the reasoning or the content: whitespace is dropped
        self.prefix = OPEN if think.legacy and think.forced_open else ""  # legacy content shows the opened tag

    def feed(self, text: str) -> list[tuple[str, str]]:
        out = []
        if self.think.legacy and text:
            out.append(("content", self.prefix + text))
            self.prefix = ""
        self.held += text
        return out + self._drain(final=False)

    def finish(self) -> list[tuple[str, str]]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while True:
            if self.state == "start":
                stripped = self.held.lstrip()
                if stripped.startswith(OPEN):
                    self.held, self.state, self.lead = stripped[len(OPEN):], "reasoning", True
                    continue
                if OPEN.startswith(stripped) and not final:
                    return out  # could still become <think>
                self.state, self.lead = "content", False  # no thinking: the reply as it came
                continue
            if self.state == "reasoning":
                if self.lead:
                    self.held = self.held.lstrip()
                    self.lead = not self.held
                before, closed, after = self.held.partition(CLOSE)
                if closed:
                    self._give(out, "reasoning", before.rstrip())
                    self.held, self.state, self.lead = after, "content", True
                    continue
                keep = 0 if final else _partial_tail(self.held, CLOSE)
                ready = self.held[:len(self.held) - keep]
                give = ready.rstrip()  # trailing whitespace waits: it may end the thoughts
                self._give(out, "reasoning", give)
                self.held = "" if final else self.held[len(give):]
                return out
            # content
            if self.lead:
                self.held = self.held.lstrip()
                self.lead = not self.held
            self._give(out, "content", self.held)
            self.held = ""
            return out

    def _give(self, out: list, kind: str, text: str) -> None:
        if not text:
            return
        if kind == "content" and self.think.legacy:
            return  # legacy: the raw text went out as content already
        out.append((kind, text))


def _partial_tail(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
