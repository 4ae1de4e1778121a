"""jina-bert-v2 (jina-embeddings-v2 small/base/code): the bert encoder with ALiBi attention biases (max bias 8,
as llama.cpp sets) instead of positions, and a GEGLU FFN whose up matrix holds the gate first."""

from __future__ import annotations

from . import bert


class Model(bert.Model):
    positions = "none"
    ffn = "geglu"
    max_alibi_bias = 8.0
