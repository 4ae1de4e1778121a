"""llamacpy: llama.cpp rebuilt in Python. GGUF models on the CPU, an OpenAI-compatible server, a web UI."""

from . import numba_cache

numba_cache.configure()  # before any module imports numba

__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: `import llamacpy` stays cheap for the CLI's --help
    if name == "Llama":
        from .api import Llama

        return Llama
    raise AttributeError(name)


__all__ = ["Llama", "__version__"]
