"""edit_file's replacement: exact text edits, matched against the original content (not one after another), with
llama-server's fallback when an old_text is not found verbatim: a match that ignores trailing whitespace and
typographic quotes, dashes and spaces, which keeps the untouched lines exactly as they were."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


class EditError(ValueError):
    """An edit that cannot be applied; the message goes back to the model."""


_FUZZY = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " "),
}
_FUZZY_TABLE = str.maketrans(_FUZZY)


def normalize(text: str) -> str:
    """Per line: trailing spaces, tabs and CRs dropped, typographic characters made ASCII; line count kept."""
    return "\n".join(line.rstrip(" \t\r").translate(_FUZZY_TABLE) for line in text.split("\n"))


@dataclass
class _Match:
    edit: int
    start: int
    length: int
    new_text: str


def _count(content: str, needle: str) -> int:
    """Non-overlapping occurrences."""
    return content.count(needle) if needle else 0


def _split_nl(text: str) -> list[str]:
    out, start = [], 0
    while start < len(text):
        nl = text.find("\n", start)
        if nl < 0:
            out.append(text[start:])
            break
        out.append(text[start:nl + 1])
        start = nl + 1
    return out


def _replace(content: str, matches: list[_Match], offset: int = 0) -> str:
    for m in reversed(matches):
        i = m.start - offset
        content = content[:i] + m.new_text + content[i + m.length:]
    return content


def _replace_keeping_lines(original: str, base: str, matches: list[_Match]) -> str:
    """As _replace on the normalized `base`, but the lines no edit touches come from `original`."""
    original_lines = _split_nl(original)
    spans, offset = [], 0
    for line in _split_nl(base):
        spans.append((offset, offset + len(line)))
        offset += len(line)
    groups: list[list] = []  # [start_line, end_line (exclusive), matches]
    for m in matches:
        first = next((i for i, (s, e) in enumerate(spans) if s <= m.start < e), 0)
        last = first
        while last < len(spans) and spans[last][1] < m.start + m.length:
            last += 1
        if groups and first < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], last + 1)
            groups[-1][2].append(m)
        else:
            groups.append([first, last + 1, [m]])
    out, line = [], 0
    for first, end, reps in groups:
        out += original_lines[line:first]
        start, stop = spans[first][0], spans[end - 1][1]
        out.append(_replace(base[start:stop], reps, start))
        line = end
    out += original_lines[line:]
    return "".join(out)


def apply_edits(original: str, path: str, edits: list[tuple[str, str]]) -> str:
    """The new content; EditError when an old_text is missing, not unique, or edits overlap."""
    fuzzy = False
    for i, (old, _) in enumerate(edits):
        if old in original:
            continue
        if normalize(old) not in normalize(original):
            raise EditError(f"could not find edits[{i}].old_text in {path}, it must match the file's current "
                            "content exactly")
        fuzzy = True
    base = normalize(original) if fuzzy else original
    matches = []
    for i, (old, new) in enumerate(edits):
        # uniqueness is judged on normalized text: a whitespace-only duplicate still counts
        n = _count(normalize(original), normalize(old))
        if n > 1:
            raise EditError(f"found {n} occurrences of edits[{i}].old_text in {path}, it must be unique")
        needle = normalize(old) if fuzzy else old
        matches.append(_Match(i, base.find(needle), len(needle), new))
    matches.sort(key=lambda m: m.start)
    for a, b in itertools.pairwise(matches):
        if a.start + a.length > b.start:
            raise EditError(f"edits[{a.edit}] and edits[{b.edit}] overlap in {path}; merge them into one edit or "
                            "target disjoint regions")
    return _replace_keeping_lines(original, base, matches) if fuzzy else _replace(base, matches)
