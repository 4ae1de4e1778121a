"""arcee (AFM-4.5B): the llama block with an ungated FFN, down(relu(up x)^2)."""

from __future__ import annotations

from . import llama


class Model(llama.Model):
    ffn_gated = False
