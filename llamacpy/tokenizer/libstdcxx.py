"""The iteration order of llama.cpp's `std::unordered_map<std::string, llama_token> token_to_id` (libstdc++).

llama.cpp finds EOT/EOM/FIM tokens by walking that map and taking the first token whose text matches, so when
a vocabulary holds several candidates (SmolLM2: <|endoftext|> and <|im_end|>) the hash table's order decides.
This reproduces it: std::hash<std::string> (MurmurHash64A-style _Hash_bytes), the prime rehash policy, and
the node placement of _M_insert_bucket_begin / _M_rehash_aux. Checked against g++ 12 on real vocabularies.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1
_MUL = (0xC6A4A793 << 32) + 0x5BD1E995
_SEED = 0xC70F6907
_WIDE = 64  # tokens up to this many bytes are hashed vectorized, longer ones one by one

# bucket counts a default-constructed map moves through; it rehashes when inserting element number B_prev
_BUCKETS = [13, 29, 59, 127, 257, 541, 1109, 2357, 5087, 10273, 20753, 42043, 85229, 172933, 351061, 712697,
            1447153, 2938679, 5967347]


def hash_bytes(data: bytes) -> int:
    """std::_Hash_bytes(data, len, 0xc70f6907) for a 64-bit size_t."""
    n = len(data)
    h = (_SEED ^ (n * _MUL)) & _MASK
    end = n & ~7
    for p in range(0, end, 8):
        d = (int.from_bytes(data[p:p + 8], "little") * _MUL) & _MASK
        d = ((d ^ (d >> 47)) * _MUL) & _MASK
        h = ((h ^ d) * _MUL) & _MASK
    if n & 7:
        h = ((h ^ int.from_bytes(data[end:], "little")) * _MUL) & _MASK
    h = ((h ^ (h >> 47)) * _MUL) & _MASK
    return h ^ (h >> 47)


def _utf8_lengths(tokens: list[str]) -> tuple[bytes, np.ndarray]:
    joined = "".join(tokens)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    width = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    ends = np.cumsum(np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)))
    byte_ends = np.concatenate([[0], np.cumsum(width)])[ends]
    return joined.encode("utf-8", "surrogatepass"), np.diff(byte_ends, prepend=0)


def hash_strings(tokens: list[str]) -> np.ndarray:
    """std::hash<std::string> of each string's UTF-8, vectorized."""
    data, lens = _utf8_lengths(tokens)
    starts = np.cumsum(lens) - lens
    out = np.empty(len(tokens), dtype=np.uint64)
    for i in np.nonzero(lens > _WIDE)[0]:
        out[i] = hash_bytes(data[starts[i]:starts[i] + lens[i]])
    rows = np.nonzero(lens <= _WIDE)[0]
    sl = lens[rows]
    buf = np.zeros((len(rows), _WIDE + 8), dtype=np.uint8)
    within = np.arange(sl.sum()) - np.repeat(np.cumsum(sl) - sl, sl)
    src = np.repeat(starts[rows], sl) + within
    buf[np.repeat(np.arange(len(rows)), sl), within] = np.frombuffer(data, dtype=np.uint8)[src]
    words = buf.view("<u8")
    mul, s47 = np.uint64(_MUL), np.uint64(47)
    nblocks = sl // 8
    with np.errstate(over="ignore"):
        h = np.uint64(_SEED) ^ (sl.astype(np.uint64) * mul)
        for j in range(_WIDE // 8):
            d = words[:, j] * mul
            d = (d ^ (d >> s47)) * mul
            h = np.where(nblocks > j, (h ^ d) * mul, h)
        tail = words[np.arange(len(rows)), nblocks]  # zero padding makes the partial word whole
        h = np.where(sl % 8 > 0, (h ^ tail) * mul, h)
        h = (h ^ (h >> s47)) * mul
        out[rows] = h ^ (h >> s47)
    return out


def iteration_order(tokens: list[str], unique: bool) -> np.ndarray:
    """Token ids in the order `for (auto & t : token_to_id)` visits them, after inserting ids 0..n-1
    (`unique`: no text repeats, as is usual)."""
    if unique:
        ids = np.arange(len(tokens))
    else:  # a repeated text only updates the existing node
        first: dict[str, int] = {}
        for i, t in enumerate(tokens):
            first.setdefault(t, i)
        ids = np.fromiter(sorted(first.values()), dtype=np.int64)
    h = hash_strings(tokens if unique else [tokens[i] for i in ids])
    # Between rehashes a node goes to the front of its bucket's run, or to the front of the list if the bucket
    # was empty; a rehash walks the list and places nodes the same way. So within one bucket count the list is
    # ordered by when each bucket was first touched (latest first), then by when each node arrived (latest first).
    order = np.empty(0, dtype=np.int64)
    start = 0
    for buckets in _BUCKETS:
        stop = min(len(ids), buckets)
        events = np.concatenate([order, np.arange(start, stop)])
        bucket = h[events] % np.uint64(buckets)
        _, first_touch, inverse = np.unique(bucket, return_index=True, return_inverse=True)
        order = events[np.lexsort((-np.arange(len(events)), -first_touch[inverse]))]
        start = stop
        if stop >= len(ids):
            break
    return ids[order]
