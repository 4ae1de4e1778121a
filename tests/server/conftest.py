"""A real `llamacpy server` process per test module, on a free port, stopped at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serverkit import ServerProcess


@pytest.fixture(scope="module")
def start_server():
    """Start servers for this module: `start_server(model_path, *flags)`; all stopped at the end."""
    started: list[ServerProcess] = []

    def start(model: Path, *flags: str) -> ServerProcess:
        server = ServerProcess(model, *flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        os.unlink(server.log.name)
