"""Router mode: `llamacpy server --models-dir DIR` serves many models, each in a child server process.

sources.py (which models, with which flags), child.py (one child process), registry.py (status, loading,
LRU unloading), proxy.py (relaying requests and streams), app.py (the route table), run.py (the process).
"""

from .run import serve_router

__all__ = ["serve_router"]
