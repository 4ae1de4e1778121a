"""One child server: `llamacpy server` for one model, on a loopback port of its own choosing.

The child gets `--port 0` and the router reads the port from its log line ("listening on ..."), so no port
is ever picked twice. Its log is forwarded to the router's, each line prefixed with `[name]`. It answers
only requests carrying its secret (given in the environment, not on the command line where `ps` shows
it). Its standard input is a pipe from the router: `exit` or end-of-file (the router died, even by
SIGKILL) makes it shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable

import httpx

from ..server.gate import ROUTER_SECRET_HEADER
from ..server.settings import ROUTER_SECRET_ENV
from .sources import ModelSource

log = logging.getLogger("llamacpy.router")

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
LOG_TAIL = 20  # lines of a failed child's log quoted in its error


class ChildFailed(RuntimeError):
    pass


class Child:
    def __init__(self, source: ModelSource, router_flags: list[str], on_exit: Callable[[Child, int], None]):
        self.source, self.on_exit = source, on_exit
        self.secret = secrets.token_urlsafe(32)
        # the child answers under the model's name (its aliases are the router's to resolve: llama-server's
        # model id is the first alias in sorted order, which would not be the name)
        names = source.name
        # the model's preset flags first, the router's command line last: argparse keeps the last of each
        self.argv = [sys.executable, "-m", "llamacpy", "server", "-m", source.model, "--host", "127.0.0.1",
                     "--port", "0", "--alias", names, "--no-webui", *source.flags, *router_flags]
        self.port: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.started_at = time.time()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._port_known = asyncio.Event()
        self._pump: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {ROUTER_SECRET_HEADER: self.secret}

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self) -> None:
        log.info("[%s] starting: %s", self.name, " ".join(self.argv[1:]))
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env={**os.environ, ROUTER_SECRET_ENV: self.secret})
        self._pump = asyncio.get_running_loop().create_task(self._forward_log())

    async def _forward_log(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            log.info("[%s] %s", self.name, line)
            if self.port is None and (m := LISTENING.search(line)):
                self.port = int(m.group(1))
                self._port_known.set()
        code = await self.proc.wait()
        self._port_known.set()  # wake a waiter: there will be no port
        if not self.stopping:
            log.error("[%s] exited with code %s", self.name, code)
        self.on_exit(self, code)

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        """Until the child answers /health with 200 (its model loaded); ChildFailed if it exits first."""
        await self._port_known.wait()
        while self.exit_code is None:
            with contextlib.suppress(httpx.TransportError):
                r = await client.get(f"{self.url}/health", headers=self.headers, timeout=5.0)
                if r.status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise self.failure()

    async def model_info(self, client: httpx.AsyncClient) -> dict:
        """The child's own /v1/models entry (its meta: vocabulary, context, parameters, size), or {}."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            r = await client.get(f"{self.url}/v1/models", headers=self.headers, timeout=5.0)
            return r.json()["data"][0]
        return {}

    def failure(self) -> ChildFailed:
        tail = "\n".join(self.tail)
        return ChildFailed(f"model '{self.name}' failed to load (exit code {self.exit_code}):\n{tail}")

    async def stop(self) -> None:
        """Ask it to exit (it ends its requests cleanly); kill it after the model's stop-timeout."""
        if self.proc is None or self.exit_code is not None:
            return
        self.stopping = True
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), self.source.stop_timeout)
        except TimeoutError:
            log.warning("[%s] did not exit within %.0f s: killed", self.name, self.source.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self._pump is not None:
            await self._pump
