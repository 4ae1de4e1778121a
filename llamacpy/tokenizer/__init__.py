"""Tokenizers built from GGUF metadata with llama.cpp's exact behaviour (BPE, SPM, WPM)."""

from .tokenizer import StreamingDetokenizer, Tokenizer

__all__ = ["StreamingDetokenizer", "Tokenizer"]
