"""The Python API: `Llama` (llama-cpp-python's class and calls) and its OpenAI-shaped results (`oai`)."""

from .llama import Llama

__all__ = ["Llama"]
