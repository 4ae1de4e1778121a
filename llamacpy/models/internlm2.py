"""internlm2 (InternLM2/2.5): the llama block (its fused wqkv is split into q, k, v by the converter)."""

from __future__ import annotations

from . import llama


class Model(llama.Model):
    pass
