"""The engine: token ids in, token ids out. No text, no JSON."""

from .generate import GenerationParams, StopReason, generate
from .sequence import Sequence

__all__ = ["GenerationParams", "Sequence", "StopReason", "generate"]
