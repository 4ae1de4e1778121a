"""llama-server's HTTP API (OpenAI-compatible and native) over the engine thread.

    llamacpy server -m smollm2-135m-instruct -np 4 --port 8080
"""

from .run import serve
from .settings import ServerSettings

__all__ = ["ServerSettings", "serve"]
