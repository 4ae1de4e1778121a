"""The engine: token ids in, token ids out. No text, no JSON."""

from .sequence import Sequence
from .generate import GenerationParams, StopReason, generate

__all__ = ["GenerationParams", "Sequence", "StopReason", "generate"]
