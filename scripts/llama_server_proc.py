"""A llama-server process for the recorder scripts: started on a free port, waited for, stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(server: str, model: Path, args: list[str]) -> Iterator[str]:
    """`llama-server -m model --port P *args` until the block ends; yields its URL once /health answers."""
    port = free_port()
    cmd = [server, "-m", str(model), "--port", str(port), *args]
    env = dict(os.environ, LD_LIBRARY_PATH=str(Path(server).parent))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
