"""exaone (EXAONE 3.x): the llama block with NEOX RoPE."""

from __future__ import annotations

from . import llama


class Model(llama.Model):
    rope_neox = True
