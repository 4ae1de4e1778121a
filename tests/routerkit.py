"""A real `llamacpy server` in router mode, for the router's tests and the web UI's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

LISTENING = re.compile(r"router: listening on http://127\.0\.0\.1:(\d+)")


def models_dir(root: Path, models: dict[str, Path]) -> Path:
    """A --models-dir holding `name.gguf` links to the given files."""
    folder = root / "models"
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in models.items():
        link = folder / f"{name}.gguf"
        if not link.exists():
            link.symlink_to(path)
    return folder


class RouterProcess:
    """`llamacpy server --port 0 FLAGS...` (router flags among them); `url` once it listens."""

    def __init__(self, *flags: str, timeout: float = 60.0):
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open for the process's lifetime
            "w+", prefix="llamacpy-router-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "llamacpy", "server", "--port", "0", *flags]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ})
        self.url = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := LISTENING.search(self.log_text()):
                self.url = f"http://127.0.0.1:{m.group(1)}"
                self.http = httpx.Client(base_url=self.url, timeout=120.0)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the router did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def statuses(self) -> dict[str, dict]:
        return {m["id"]: m["status"] for m in self.http.get("/v1/models").json()["data"]}

    def wait_status(self, model: str, value: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.statuses()[model]
            if status["value"] == value:
                return status
            time.sleep(0.1)
        raise AssertionError(f"{model} is {self.statuses()[model]}, not {value}, after {timeout} s")

    def child_pids(self) -> list[int]:
        """Process ids of the router's children (from /proc: its direct children running `llamacpy server`)."""
        out = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                out.append(int(pid))
        return out

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
