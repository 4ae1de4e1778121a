"""Real `llamacpy server` processes on free ports, for the tests and benchmarks: one model
(`ServerProcess`), or a router (`routerkit.RouterProcess`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llamacpy.engine import precompile

READY = re.compile(r"model .* ready in")
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class LlamacpyServer:
    """`llamacpy server --port 0 ARGS...`, its output in a log file; `url` once `port_when_ready` finds the
    port in that log. Stopped (SIGINT, then SIGKILL after `timeout`) by `stop()`."""

    def __init__(self, *args: str, timeout: float = 180.0, cwd: Path | None = None):
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open for the process's lifetime
            "w+", prefix="llamacpy-server-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "llamacpy", "server", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ}, cwd=cwd)
        self.url = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.port_when_ready(self.log_text())
            if port:
                self.url = f"http://127.0.0.1:{port}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start:\n{self.log_text()}")

    def port_when_ready(self, log: str) -> str | None:
        port = LISTENING.search(log)
        return port.group(1) if port and READY.search(log) else None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def wait_precompiled(self, timeout: float = 600.0) -> None:
        """Until the server's background compile of the fused step (engine/precompile.py, a first start on a
        cold numba cache) has ended: its code loads on the next step, which a memory check must not count."""
        t0 = time.monotonic()
        while precompile.compiling(self.pid):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("the background compile did not end")
            time.sleep(0.2)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60.0), **kw)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class ServerProcess(LlamacpyServer):
    """`llamacpy server -m MODEL --port 0 FLAGS...`; `url` once the model is ready."""

    def __init__(self, model: Path, *flags: str, timeout: float = 180.0, cwd: Path | None = None):
        super().__init__("-m", str(model), *flags, timeout=timeout, cwd=cwd)


def sse_events(lines) -> list:
    """The `data:` payloads of an SSE body (JSON decoded; "[DONE]" kept as a string)."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out

