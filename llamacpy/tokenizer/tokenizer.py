"""Tokenizer built from GGUF metadata, giving the same token ids and text as llama.cpp (llama-vocab.cpp).

    tok = Tokenizer.from_gguf(GGUFFile(path))
    ids = tok.encode(prompt, add_special=True, parse_special=True)   # what llama-server's /tokenize returns
    stream = tok.detokenizer()                                       # for generated tokens
    text = "".join(stream.feed(t) for t in generated) + stream.flush()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import unicode as uc
from .bpe import BpeTokenizer
from .spm import ESCAPED_SPACE, SpmTokenizer
from .ugm import UgmTokenizer
from .vocab import KV, SPECIAL_ATTRS, Attr, Vocab
from .wpm import WpmTokenizer

if TYPE_CHECKING:
    from llamacpy.gguf import GGUFFile

_C_SPACE = " \t\n\v\f\r"  # C isspace(), used for the LSTRIP/RSTRIP attributes
_HIDDEN = int(Attr.UNKNOWN | Attr.CONTROL)  # rendered only when special=True


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary, matching llama_tokenize / llama_detokenize."""

    def __init__(self, vocab: Vocab, merges: list[str] | None = None, charsmap: bytes | None = None):
        self.vocab = vocab
        if vocab.type == "spm":
            self._impl: Any = SpmTokenizer(vocab)
        elif vocab.type == "bpe":
            self._impl = BpeTokenizer(vocab, merges or [])
        elif vocab.type == "wpm":
            self._impl = WpmTokenizer(vocab)
        elif vocab.type == "ugm":
            self._impl = UgmTokenizer(vocab, charsmap)
        else:
            raise NotImplementedError(f"tokenizer type {vocab.model!r} is not supported")
        self._pieces: list[bytes | None] = [None] * vocab.n_tokens
        self._attrs = vocab.attrs.tolist()
        self._special_index = _SpecialIndex(vocab.special_cache, vocab.tokens)

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> Tokenizer:
        md = g.metadata
        charsmap = md.get(KV + "precompiled_charsmap")
        return cls(Vocab(md), md.get(KV + "merges"), None if charsmap is None else bytes(charsmap))

    # -- properties --------------------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self.vocab.n_tokens

    @property
    def bos_id(self) -> int | None:
        return self.vocab.ids["bos"]

    @property
    def eos_id(self) -> int | None:
        return self.vocab.ids["eos"]

    @property
    def eot_id(self) -> int | None:
        return self.vocab.ids["eot"]

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    @property
    def add_sep(self) -> bool:
        return self.vocab.add_sep

    @property
    def sep_id(self) -> int | None:
        return self.vocab.ids["sep"]

    @property
    def eog_ids(self) -> set[int]:
        return self.vocab.eog_ids

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.vocab.eog_ids

    def token_text(self, token_id: int) -> str:
        if not 0 <= token_id < self.vocab.n_tokens:
            raise IndexError(f"token id {token_id} out of range [0, {self.vocab.n_tokens})")
        return self.vocab.tokens[token_id]

    # -- encode ------------------------------------------------------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """llama_tokenize: BOS/EOS per the model when add_special; special-token text parsed when parse_special
        (user-defined tokens are always split out first, as in llama.cpp)."""
        v = self.vocab
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:  # lone surrogates cannot reach llama.cpp as UTF-8; replace them
                text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        fragments = self._partition(text, parse_special) if text else []
        out: list[int] = []
        if add_special and (v.add_bos or v.type == "wpm"):
            if v.ids["bos"] is None:
                raise ValueError("the model adds BOS but has no BOS token")
            out.append(v.ids["bos"])
        prev_special = True
        for frag in fragments:
            if isinstance(frag, int):
                out.append(frag)
            else:
                out.extend(self._impl.encode(self._escape(frag, prev_special)))
            prev_special = isinstance(frag, int)
        if add_special:
            if v.type == "wpm":
                out.append(v.ids["sep"])
            elif v.add_eos:
                if v.ids["eos"] is None:
                    raise ValueError("the model adds EOS but has no EOS token")
                out.append(v.ids["eos"])
        return out

    def _escape(self, frag: str, after_special: bool) -> str:
        v = self.vocab
        if v.type == "spm":
            # SentencePiece's dummy prefix goes before the text and after every special token
            if v.add_space_prefix and after_special:
                frag = " " + frag
            return frag.replace(" ", ESCAPED_SPACE)
        if v.type == "bpe" and v.escape_whitespaces:
            return frag.replace(" ", ESCAPED_SPACE)
        return frag

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """tokenizer_st_partition: cut special tokens out of the text, longest token text first."""
        v = self.vocab
        fragments: list[str | int] = [text]
        for tid in self._special_index.candidates(text):
            attr = self._attrs[tid]
            if not parse_special and attr & _HIDDEN:
                continue
            special = v.tokens[tid]
            if special not in text:
                continue
            lstrip, rstrip = attr & Attr.LSTRIP, attr & Attr.RSTRIP
            new: list[str | int] = []
            for frag in fragments:
                if isinstance(frag, int) or special not in frag:
                    new.append(frag)
                    continue
                while True:
                    idx = frag.find(special)
                    if idx < 0:
                        new.append(frag)
                        break
                    left = frag[:idx].rstrip(_C_SPACE) if lstrip else frag[:idx]
                    if left:
                        new.append(left)
                    new.append(tid)
                    frag = frag[idx + len(special):]
                    if rstrip:
                        frag = frag.lstrip(_C_SPACE)
                    if not frag:
                        break
            fragments = new
        return fragments

    # -- decode ------------------------------------------------------------------------------------------

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """llama_token_to_piece: the bytes a token stands for; control/unknown tokens are empty unless special."""
        if not 0 <= token_id < self.vocab.n_tokens:
            raise IndexError(f"token id {token_id} out of range [0, {self.vocab.n_tokens})")
        if not special and self._attrs[token_id] & _HIDDEN:
            return b""
        piece = self._pieces[token_id]
        if piece is None:
            piece = self._pieces[token_id] = self._make_piece(token_id)
        return piece

    def _make_piece(self, token_id: int) -> bytes:
        v = self.vocab
        attr = self._attrs[token_id]
        text = v.tokens[token_id]
        if attr & SPECIAL_ATTRS:
            return text.encode()
        if attr & Attr.NORMAL:
            if v.type != "bpe" or v.escape_whitespaces:
                return text.replace(ESCAPED_SPACE, " ").encode()
            return _decode_byte_level(text)
        if attr & Attr.BYTE:
            return bytes([int(text[3:5], 16)])
        return b""

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """llama_detokenize (as common_detokenize calls it): drops the space the SPM prefix added to the first
        token and applies the model's clean-up of spaces before punctuation."""
        buf = bytearray()
        remove_space = self.vocab.add_space_prefix
        for tid in ids:
            piece = self.token_to_piece(tid, special=not skip_special)
            if remove_space and piece[:1] == b" ":
                piece = piece[1:]
            remove_space = False
            buf += piece
        if self.vocab.clean_spaces:
            buf = _clean_spaces(buf)
        return buf.decode("utf-8", "replace")

    def detokenizer(self, skip_special: bool = False) -> StreamingDetokenizer:
        return StreamingDetokenizer(self, skip_special)


class _SpecialIndex:
    """Narrows the special tokens to try on a text (Gemma has 6k+ of them) by their first three characters,
    keeping llama.cpp's longest-first order."""

    _MIN = 64  # below this many special tokens, trying them all is cheaper

    def __init__(self, special_ids: list[int], tokens: list[str]):
        self.all = special_ids
        self.short: list[int] = []
        self.by_prefix: dict[str, list[int]] = {}
        self.position = {tid: i for i, tid in enumerate(special_ids)}
        for tid in special_ids:
            text = tokens[tid]
            if len(text) < 3:
                self.short.append(tid)
            else:
                self.by_prefix.setdefault(text[:3], []).append(tid)

    def candidates(self, text: str) -> list[int]:
        if len(self.all) < self._MIN:
            return self.all
        grams = {text[i:i + 3] for i in range(len(text) - 2)}
        found = [tid for g in grams.intersection(self.by_prefix) for tid in self.by_prefix[g]]
        return sorted(found + self.short, key=self.position.__getitem__)


class StreamingDetokenizer:
    """Turns generated tokens into text as they arrive, holding back an incomplete UTF-8 sequence.

    Like llama.cpp's server stream, pieces are concatenated as they are (no prefix-space removal or
    clean-up), so a multi-byte character split over several tokens comes out whole, in one piece.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self.tokenizer = tokenizer
        self.special = not skip_special
        self._pending = b""

    def feed(self, token_id: int) -> str:
        data = self._pending + self.tokenizer.token_to_piece(token_id, self.special)
        cut = len(data) - _incomplete_tail(data)
        self._pending = data[cut:]
        return data[:cut].decode("utf-8", "replace")

    def flush(self) -> str:
        data, self._pending = self._pending, b""
        return data.decode("utf-8", "replace")


def _incomplete_tail(data: bytes) -> int:
    """Length of a trailing UTF-8 sequence that has started but not finished (0 if none)."""
    for k in range(1, min(4, len(data)) + 1):
        c = data[-k]
        if c & 0xC0 == 0x80:
            continue
        need = 2 if 0xC0 <= c < 0xE0 else 3 if 0xE0 <= c < 0xF0 else 4 if 0xF0 <= c < 0xF8 else 1
        return k if need > k else 0
    return 0


def _decode_byte_level(text: str) -> bytes:
    """llama_decode_text: GPT-2 byte-level chars back to bytes; unknown chars are flagged inline."""
    table = uc.unicode_to_byte()
    try:
        return bytes(table[c] for c in text)
    except KeyError:
        out = bytearray()
        for c in text:
            b = table.get(c)
            if b is None:
                out += b"[UNK_BYTE_0x" + c.encode().hex().encode() + text.encode() + b"]"
            else:
                out.append(b)
        return bytes(out)


def _clean_spaces(text: bytearray) -> bytearray:
    """The three clean_spaces passes of llama_vocab::impl::detokenize, byte for byte."""
    if not any(p in text for p in (b" ?", b" !", b" .", b" ,", b" '")):
        return text
    t = text
    # pass 1: " ?", " !", " .", " ," lose the space
    n, total = len(t), 1 if len(t) else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        t[total] = x
        total += 1
    del t[total:]
    # pass 2: a lone apostrophe between spaces loses both spaces
    n, total, i = len(t), 1 if len(t) else 0, 1
    while i < n:
        x = t[i]
        if x == 0x27 and i + 1 < n and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            total -= 1
            i += 1
            t[i] = 0
        t[total] = x
        total += 1
        i += 1
    del t[total:]
    # pass 3: " 's", " 'm", " 're", " 've" lose the space
    n, total = len(t), 1 if len(t) else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and (t[i + 1:i + 2] in (b"s", b"m") or t[i + 1:i + 3] in (b"re", b"ve")):
            total -= 1
        t[total] = x
        total += 1
    del t[total:]
    return t
