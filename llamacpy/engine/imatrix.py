"""Importance matrices by llama-imatrix's method (tools/imatrix/imatrix.cpp).

The text is run through the model as llama-perplexity runs it (chunks of n_ctx tokens, each from an empty cache
with BOS first; engine/perplexity.py), and every product's f32 input rows are summed squared per column:
- a dense weight (a name starting "blk.", or "output.weight" with `process_output`) when the product has 16 rows
  or more (llama.cpp skips smaller batches); its count is the rows seen;
- a 3-D expert tensor (MUL_MAT_ID) always, per expert: the rows routed to it, rank by rank and tokens within, and
  its count per expert.
Each square is rounded, then added (imatrix.cpp is built without FMA). The chunk count is the
largest count over chunk_size, as llama.cpp's m_last_chunk. The file format is quantize/imatrix_file.py's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
from numba import njit

from ..models import DecoderModel
from ..ops.linear import Linear
from ..quantize.imatrix_file import Imatrix, save
from .perplexity import PerplexityResult, perplexity

MIN_ROWS = 16  # llama-imatrix ignores dense products of fewer activation rows


@njit(cache=True, nogil=True)
def _add_squares(acc, x):
    """acc[j] += x[t, j]^2 for every row t in order, the square rounded before the sum: imatrix.cpp is built
    without -march=native (only ggml gets it), so GCC has no FMA to contract `acc[j] += x[j] * x[j]` into."""
    for t in range(x.shape[0]):
        for j in range(x.shape[1]):
            acc[j] = acc[j] + np.float32(x[t, j] * x[t, j])


class ImatrixCollector:
    """Linear.observer while installed (`with collector.installed():`): per weight name the sums f32[n_mat, ne0]
    and counts int64[n_mat]."""

    def __init__(self, chunk_size: int, process_output: bool = False):
        self.chunk_size, self.process_output = chunk_size, process_output
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.datasets: list[str] = []  # those of the merged files (the text's own is added when saving)

    def __call__(self, name: str, x: np.ndarray, expert: int, n_expert: int) -> None:
        if expert < 0 and (len(x) < MIN_ROWS or not (name.startswith("blk.")
                                                    or (self.process_output and name == "output.weight"))):
            return
        x = np.ascontiguousarray(x, dtype=np.float32)
        sums = self.sums.get(name)
        if sums is None:
            sums = self.sums[name] = np.zeros((n_expert, x.shape[1]), np.float32)
            self.counts[name] = np.zeros(n_expert, np.int64)
        elif sums.shape != (n_expert, x.shape[1]):
            raise ValueError(f"inconsistent size for {name}: {sums.shape} vs {(n_expert, x.shape[1])}")
        row = max(expert, 0)
        _add_squares(sums[row], x)
        if not np.isfinite(sums[row]).all():
            raise ValueError(f"non-finite values detected in {name}")
        self.counts[name][row] += len(x)

    def merge(self, m: Imatrix) -> None:
        """Add a loaded file's statistics (--in-file), as load_imatrix: a GGUF file's raw sums and counts; a legacy
        file's (mean x ncall) values and ncall times chunk_size."""
        self.datasets += m.datasets
        for name, sums in m.sums.items():
            counts = np.asarray(m.counts[name], np.int64)
            sums = np.asarray(sums, np.float32).reshape(len(counts) if not m.legacy else 1, -1)
            if m.legacy:
                sums, counts = sums * np.float32(self.chunk_size), counts[:1] * self.chunk_size
            if name not in self.sums:
                self.sums[name], self.counts[name] = sums.copy(), counts.copy()
            elif self.sums[name].shape != sums.shape:
                raise ValueError(f"mismatched sizes for {name}: {self.sums[name].shape} vs {sums.shape}")
            else:
                self.sums[name] += sums
                self.counts[name] += counts

    @contextmanager
    def installed(self):
        if Linear.observer is not None:
            raise RuntimeError("an importance matrix is already being collected")
        Linear.observer = self
        try:
            yield self
        finally:
            Linear.observer = None

    @property
    def chunk_count(self) -> int:
        return max((int(c.max()) // self.chunk_size for c in self.counts.values() if c.size), default=0)

    def imatrix(self, datasets: list[str]) -> Imatrix:
        """The statistics as a file's; `datasets`: the texts run, after the merged files' own."""
        return Imatrix(dict(self.sums), dict(self.counts), self.datasets + list(datasets), self.chunk_count,
                       self.chunk_size)

    def partial(self) -> list[tuple[str, float]]:
        """(name, share of its experts with data) for the entries some expert of which saw no token."""
        return [(n, float((c > 0).mean())) for n, c in sorted(self.counts.items()) if (c == 0).any()]


def compute_imatrix(model: DecoderModel, tokens: list[int], n_ctx: int, out_path: str | os.PathLike,
                    datasets: list[str], n_chunks: int = -1, n_batch: int = 512, bos_id: int | None = None,
                    out_freq: int = 10, save_freq: int = 0,
                    on_chunk: Callable[[int, int, float], None] | None = None,
                    collector: ImatrixCollector | None = None,
                    legacy: bool = False) -> tuple[ImatrixCollector, PerplexityResult]:
    """Collect over the chunks (into `collector`, which holds --process-output and merged files; default: a new
    one), saving to `out_path` every `out_freq` chunks and at the end (and a copy `out_path.at_N` every
    `save_freq` chunks, as llama-imatrix), in GGUF or with `legacy` in the .dat format."""
    collector = collector or ImatrixCollector(n_ctx)

    def chunk_done(i: int, n: int, ppl: float) -> None:
        done = i + 1
        if done % out_freq == 0 and done < n:
            save(out_path, collector.imatrix(datasets), legacy)
        if save_freq > 0 and done % save_freq == 0:
            save(f"{out_path}.at_{done}", collector.imatrix(datasets), legacy)
        if on_chunk:
            on_chunk(i, n, ppl)

    with collector.installed():
        res = perplexity(model, tokens, n_ctx, n_chunks, n_batch, bos_id, chunk_done)
    save(out_path, collector.imatrix(datasets), legacy)
    return collector, res
