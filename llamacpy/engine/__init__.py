"""The engine: token ids in, token ids out. No text, no JSON."""

from .generate import GenerationParams, StopReason, generate
from .loop import Engine, EngineConfig
from .requests import DoneEvent, EndReason, GenRequest, ProgressEvent, Stats, TokenEvent
from .sequence import Sequence

__all__ = ["DoneEvent", "EndReason", "Engine", "EngineConfig", "GenRequest", "GenerationParams", "ProgressEvent",
           "Sequence",
           "Stats", "StopReason", "TokenEvent", "generate"]
