"""ernie4_5 (ERNIE-4.5 dense, 0.3B...): the llama block (NORM RoPE, optional attention output bias), the output
matrix the embedding when the file has none."""

from __future__ import annotations

from . import llama


class Model(llama.Model):
    pass
