"""`llamacpy imatrix --in-file FILE --show-statistics`: llama-imatrix's per-tensor and per-layer tables.

Per entry (tools/imatrix/imatrix.cpp compute_statistics): the mean squared activation of every column (sums /
count, experts without tokens left out), their sum, min, max, mean, standard deviation, the share above 1e-5,
the entropy of their distribution (bits, and as a share of log2 N), the share more than one deviation above the
mean (ZD), and the cosine similarity with the same tensor one layer down. Then per layer the element-weighted
means of the sum, ZD and cosine. The float32 arithmetic follows the C++ (sequential sums, each product rounded:
llama.cpp builds as ISO C++17, where GCC does not contract to FMA), so the printed figures are llama-imatrix's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from numba import njit

BLOCK = re.compile(r"blk\.(\d+)\.")
HEADER = ("\n Layer\t       Tensor\t          \u03a3(Act\u00b2)\t  Min\t            Max\t           \u03bc\t   \u03c3\t"
          " % Active\tN\t   Entropy\tE (norm)\tZD\t  CosSim\n")
LAYER_HEADER = "\n  Layer\t     \u03bc\u03a3(Act\u00b2)\t      \u03bcZD\t\u03bcCosSim\n" + "=" * 48 + "\n"


@njit(cache=True, nogil=True)
def _moments(a):
    """std::accumulate and std::inner_product(a, a) over float32, in order."""
    total = np.float32(0.0)
    squares = np.float32(0.0)
    for v in a:
        total = total + v
        squares = squares + np.float32(v * v)
    return total, squares


@njit(cache=True, nogil=True)
def _dot(a, b):
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc = acc + np.float32(a[i] * b[i])
    return acc


@njit(cache=True, nogil=True)
def _entropy(a, total):
    e = np.float32(0.0)
    for v in a:
        p = np.float32(v / total)
        if p > 0:
            e = e - np.float32(p * np.float32(math.log2(p)))
    return e


@dataclass
class TensorStats:
    name: str
    values: np.ndarray  # the raw sums, for the cosine with the layer below
    total: float
    mean: float
    max: float
    min: float
    elements: int
    stddev: float
    active: float
    entropy: float
    zd: float
    cossim: float = 0.0


def split_name(name: str) -> tuple[str, str]:
    """(layer, tensor) as process_tensor_name: the part after `blk`, the part before `weight` ('-' / the name)."""
    parts = name.split(".")
    layer = next((parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "blk"), "-")
    tensor = next((parts[i - 1] for i in range(1, len(parts)) if parts[i] == "weight"), name)
    return layer, tensor


def tensor_stats(name: str, sums: np.ndarray, counts: np.ndarray) -> TensorStats | None:
    sums = np.asarray(sums, np.float32).reshape(len(counts), -1)
    rows = [sums[i] / np.float32(c) for i, c in enumerate(counts) if c != 0]
    if not rows:
        return None
    act = np.ascontiguousarray(np.concatenate(rows), np.float32)
    n = np.float32(act.size)
    total, squares = _moments(act)
    mean = np.float32(total / n)
    var = np.float32(np.float32(squares / n) - np.float32(mean * mean))
    dev = np.float32(math.sqrt(max(np.float32(0.0), var)))
    inactive = int(np.count_nonzero(np.abs(act) <= np.float32(1e-5)))
    entropy = _entropy(act, total) if total > 0 else np.float32(0.0)
    zd = int(np.count_nonzero((act - mean) / dev > 1)) if dev > 0 else 0
    return TensorStats(name, sums.reshape(-1), float(total), float(mean), float(act.max()), float(act.min()),
                       act.size, float(dev), float(np.float32(1) - np.float32(inactive) / n), float(entropy),
                       float(np.float32(zd) / n))


def cosine_with_layer_below(stats: list[TensorStats]) -> None:
    by_name = {s.name: s for s in stats}
    for s in stats:
        m = BLOCK.search(s.name)
        if not m:
            continue
        prev = by_name.get(s.name[:m.start(1)] + str(int(m[1]) - 1) + s.name[m.end(1):])
        if prev is not None and prev.values.size == s.values.size:
            dp = _dot(s.values, prev.values)
            mag = np.float32(math.sqrt(_dot(s.values, s.values))) * np.float32(math.sqrt(_dot(prev.values,
                                                                                               prev.values)))
            s.cossim = float(np.float32(dp / mag))


def report(path: str, sums: dict[str, np.ndarray], counts: dict[str, np.ndarray]) -> str:
    """The two tables llama-imatrix prints for `--show-statistics`."""
    stats = [s for name in sums if (s := tensor_stats(name, sums[name], counts[name])) is not None]
    if not stats:
        raise ValueError(f"cannot compute statistics for {path}")
    cosine_with_layer_below(stats)
    stats.sort(key=lambda s: (split_name(s.name)[1], -s.total))
    out = [f"\nComputing statistics for {path} ({len(stats)} tensors)\n",
           HEADER,
           "=" * 169 + "\n"]
    layers: dict[int, list[float]] = {}
    for s in stats:
        layer, tensor = split_name(s.name)
        norm = 100.0 * (s.entropy / math.log2(s.elements)) if s.elements > 0 else 0.0
        out.append(f"{layer:>5s}\t{tensor:<20s}\t{s.total:10.2f}\t{s.min:8.4f}\t{s.max:11.4f}\t{s.mean:6.2f}\t"
                   f"{s.stddev:6.2f}\t{np.float32(s.active) * np.float32(100):8.2f}%\t{s.elements:6d}\t"
                   f"{s.entropy:10.4f}\t{np.float32(norm):6.2f}%\t{np.float32(100) * np.float32(s.zd):10.2f}%\t"
                   f"{s.cossim:8.4f}\n")
        w = layers.setdefault(int(layer) if layer.isdigit() else -1, [0.0, 0.0, 0.0, 0])
        w[0] = float(np.float32(w[0]) + np.float32(s.elements) * np.float32(s.total))
        w[1] = float(np.float32(w[1]) + np.float32(s.elements) * np.float32(s.zd))
        w[2] = float(np.float32(w[2]) + np.float32(s.elements) * np.float32(s.cossim))
        w[3] += s.elements
    out.append(f"\nComputing weighted average statistics per layer ({sum(k >= 0 for k in layers)} layers)\n")
    out.append(LAYER_HEADER)
    for layer in sorted(layers):
        bias, zd, cos, n = layers[layer]
        if n and layer >= 0:
            out.append(f"{layer:5d}\t{np.float32(bias) / np.float32(n):14.2f}\t"
                       f"{np.float32(100) * (np.float32(zd) / np.float32(n)):10.4f}%\t{np.float32(cos) / np.float32(n):6.4f}\n")
    return "".join(out) + "\n"
