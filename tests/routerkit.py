"""A real `llamacpy server` in router mode, for the router's tests and the web UI's."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
from serverkit import LlamacpyServer

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


class RouterProcess(LlamacpyServer):
    """`llamacpy server --port 0 FLAGS...` (router flags among them); `url` and `http` once it listens."""

    def __init__(self, *flags: str, timeout: float = 60.0):
        super().__init__(*flags, timeout=timeout)
        self.http = httpx.Client(base_url=self.url, timeout=120.0)

    def port_when_ready(self, log: str) -> str | None:
        m = LISTENING.search(log)
        return m.group(1) if m else None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int | None:  # it stops its children first
        self.http.close()
        return super().stop(sig, timeout)

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
