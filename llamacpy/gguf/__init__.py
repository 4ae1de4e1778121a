"""GGUF files: a memory-mapped reader with typed metadata and zero-copy tensor views."""

from .constants import BLOCK_LAYOUT, GGMLType
from .reader import GGUFError, GGUFFile, Tensor

__all__ = ["BLOCK_LAYOUT", "GGMLType", "GGUFError", "GGUFFile", "Tensor"]
