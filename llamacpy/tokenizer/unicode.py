"""Codepoint classification exactly as llama.cpp's unicode.cpp does it (its own tables, not `unicodedata`)."""

from __future__ import annotations

import base64
import functools
import zlib

import numpy as np

from . import _unicode_data as _data

MAX_CODEPOINTS = 0x110000

# unicode_cpt_flags bits (llama.cpp unicode.h)
UNDEFINED = 0x0001
NUMBER = 0x0002
LETTER = 0x0004
SEPARATOR = 0x0008
ACCENT_MARK = 0x0010
PUNCTUATION = 0x0020
SYMBOL = 0x0040
CONTROL = 0x0080
WHITESPACE = 0x0100

# the single byte each category collapses to before a \p{..} regex runs (unicode_regex_split)
COLLAPSED = {NUMBER: 0xD1, LETTER: 0xD2, PUNCTUATION: 0xD3, ACCENT_MARK: 0xD4, SYMBOL: 0xD5}
COLLAPSED_OTHER = 0xD0
COLLAPSED_SPACE = 0x0B


def _load(blob: str, shape: tuple[int, ...]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode("".join(blob)))
    return np.frombuffer(raw, dtype="<u4").reshape(shape)


@functools.cache
def flags_table() -> np.ndarray:
    """uint16 flags per codepoint: one category bit, plus WHITESPACE (unicode_cpt_flags_array)."""
    ranges = _load(_data.RANGES_FLAGS, _data.RANGES_FLAGS_SHAPE)
    starts, flags = ranges[:, 0].astype(np.int64), ranges[:, 1].astype(np.uint16)
    table = np.repeat(flags[:-1], np.diff(starts))
    table[whitespace_codepoints()] |= WHITESPACE
    return table


@functools.cache
def whitespace_codepoints() -> np.ndarray:
    return _load(_data.WHITESPACE, _data.WHITESPACE_SHAPE)[:, 0].astype(np.int64)


@functools.cache
def collapse_table() -> np.ndarray:
    """uint8 per codepoint: ASCII kept, other whitespace -> 0x0B, other codepoints -> their category byte."""
    cats = flags_table() & 0xFF
    table = np.full(MAX_CODEPOINTS, COLLAPSED_OTHER, dtype=np.uint8)
    for flag, byte in COLLAPSED.items():
        table[cats == flag] = byte
    table[flags_table() & WHITESPACE != 0] = COLLAPSED_SPACE
    table[:128] = np.arange(128, dtype=np.uint8)
    return table


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def collapse(text: str) -> str:
    """One char per codepoint, in the alphabet the rewritten \\p{..} regexes match against."""
    if text.isascii():
        return text
    return collapse_table()[codepoints(text)].tobytes().decode("latin-1")


@functools.cache
def non_ascii_whitespace() -> dict[int, int]:
    """str.translate table: non-ASCII whitespace -> 0x0B, as llama.cpp feeds std::wregex."""
    return {int(cp): COLLAPSED_SPACE for cp in whitespace_codepoints() if cp >= 128}


def cpt_flags(cp: int) -> int:
    return int(flags_table()[cp]) if cp < MAX_CODEPOINTS else UNDEFINED


@functools.cache
def lowercase_map() -> dict[int, int]:
    pairs = _load(_data.LOWERCASE, _data.LOWERCASE_SHAPE)
    return {int(a): int(b) for a, b in pairs}


@functools.cache
def nfd_first_map() -> dict[int, int]:
    """Codepoint -> first codepoint of its NFD form (unicode_cpts_normalize_nfd), only where it differs."""
    out: dict[int, int] = {}
    for start, last, nfd in _load(_data.NFD, _data.NFD_SHAPE):
        for cp in range(int(start), int(last) + 1):
            if cp != nfd:
                out[cp] = int(nfd)
    return out


@functools.cache
def byte_to_unicode() -> list[str]:
    """GPT-2 byte-level alphabet: byte -> printable char (unicode_byte_to_utf8_map)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out = [""] * 256
    for b in keep:
        out[b] = chr(b)
    n = 0
    for b in range(256):
        if not out[b]:
            out[b] = chr(256 + n)
            n += 1
    return out


@functools.cache
def unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_to_unicode())}


@functools.cache
def byte_encode_table() -> dict[int, str]:
    """str.translate table for latin-1-decoded UTF-8 bytes -> GPT-2 byte-level chars."""
    return dict(enumerate(byte_to_unicode()))


def byte_encode(word: str) -> str:
    return word.encode("utf-8", "surrogatepass").decode("latin-1").translate(byte_encode_table())
