"""Helpers of the browser tests: a server process, a browser profile, a chat page and its actions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
from serverkit import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LLAMACPY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# Replies in tests: greedy, so a run is repeatable; the settings dialog can still change them per test.
DEFAULT_SETTINGS = {"system": "", "temperature": 0.0, "top_p": 0.95, "max_tokens": 64}


class ServerView:
    """What a server (or a router, which routes these to the model's child) says; `http` is its client."""

    url: str
    http: httpx.Client

    def sessions(self, *ids: str) -> list[dict]:
        r = self.http.post("/v1/streams/lookup", json={"conversation_ids": list(ids)})
        assert r.status_code == 200, r.text
        return r.json()

    def is_generating(self, identity: str) -> bool:
        return any(not s["is_done"] for s in self.sessions(identity) if s["conversation_id"] == identity)

    def wait_finished(self, identity: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.is_generating(identity):
            assert time.monotonic() < deadline, f"{identity} still generating after {timeout} s"
            time.sleep(0.2)

    def replay_text(self, identity: str) -> str:
        """The reply's text as the server's replay of the whole stream (GET from byte 0) has it."""
        r = self.http.get("/v1/stream", params={"conv_id": identity, "from": 0})
        assert r.status_code == 200, r.text
        assert r.text.endswith("data: [DONE]\n\n"), r.text[-200:]
        return content_of(r.text)

    def slots_busy(self, model: str | None = None) -> tuple[int, int]:
        """(slots generating, tokens they have generated so far); a router's need the `model`."""
        r = self.http.get("/slots", params={"model": model} if model else None)
        assert r.status_code == 200, r.text
        busy = [s for s in r.json() if s["is_processing"]]
        return len(busy), sum(s["next_token"][0]["n_decoded"] for s in busy)


class UiServer(ServerView, ServerProcess):
    """`llamacpy server -m MODEL --port 0 -c 4096 FLAGS...` (with `key`: `--api-key KEY`), ready once constructed."""

    def __init__(self, model: Path, *flags: str, key: str | None = None, timeout: float = 180.0):
        self.key = key
        super().__init__(model, "-c", "4096", *flags, *(["--api-key", key] if key else []), timeout=timeout, cwd=ROOT)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def stop(self) -> None:
        if hasattr(self, "http"):
            self.http.close()
        super().stop()
        os.unlink(self.log.name)


class UiRouter(ServerView):
    """A router (tests/routerkit.py's RouterProcess) as the UI tests see it."""

    def __init__(self, router):
        self.router, self.url, self.http = router, router.url, router.http

    def statuses(self) -> dict[str, dict]:
        return self.router.statuses()

    def wait_status(self, model: str, value: str, timeout: float = 120.0) -> dict:
        return self.router.wait_status(model, value, timeout)


def content_of(sse: str) -> str:
    text = []
    for line in sse.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def new_context(browser, settings: dict | None = None, **kw):
    """A fresh profile whose new conversations start with `settings` (test defaults otherwise)."""
    ctx = browser.new_context(viewport=kw.pop("viewport", {"width": 1200, "height": 800}), **kw)
    init = json.dumps({**DEFAULT_SETTINGS, **(settings or {})})
    ctx.add_init_script(f"localStorage.getItem('llamacpy.defaultSettings') || "
                        f"localStorage.setItem('llamacpy.defaultSettings', {json.dumps(init)});")
    ctx.set_default_timeout(30_000)
    return ctx


class Chat:
    """One page of the UI and the actions a user takes on it."""

    def __init__(self, page, server: ServerView):
        self.page, self.server = page, server
        self.errors: list[str] = []
        self.ended_before = 0
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str = "/") -> Chat:
        self.page.goto(self.server.url + path)
        self.page.wait_for_function("window.llamacpy && window.llamacpy.app.ready")
        return self

    def mark(self) -> None:
        """Remember how many replies have ended; `wait_done` then waits for the next one."""
        self.ended_before = self.page.evaluate("window.llamacpy.app.repliesEnded")

    def send(self, text: str) -> None:
        self.mark()
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")
        self.page.wait_for_function("location.hash.startsWith('#/c/')")

    @property
    def conv_id(self) -> str:
        return self.page.evaluate("location.hash.slice(4)")

    def last_reply(self, selector_status: str | None = None):
        sel = "article.msg.assistant"
        if selector_status:
            sel += f"[data-status={selector_status}]"
        return self.page.locator(sel).last

    def wait_reply_chars(self, n: int, timeout: float = 60_000) -> str:
        """Wait until the streaming reply shows at least `n` characters; its text so far."""
        self.page.wait_for_function(
            "n => { const g = window.llamacpy.app.gens.values().next().value;"
            " return g && g.message.content.length >= n; }", arg=n, timeout=timeout)
        return self.live_text()

    def live_text(self) -> str:
        return self.page.evaluate("[...window.llamacpy.app.gens.values()].map(g => g.message.content).join('')")

    def wait_done(self, timeout: float = 120_000) -> None:
        """Wait for the reply after `mark()` (or `send()`) to end, complete. A reload restarts the count."""
        self.page.wait_for_function("n => window.llamacpy.app.repliesEnded > n", arg=self.ended_before,
                                    timeout=timeout)
        self.page.wait_for_selector("article.msg.assistant:last-of-type[data-status=done]", timeout=timeout)

    def stored_messages(self, conv_id: str | None = None) -> list[dict]:
        return self.page.evaluate("id => window.llamacpy.db.getMessages(id)", conv_id or self.conv_id)

    def stored_reply(self, conv_id: str | None = None) -> dict:
        return [m for m in self.stored_messages(conv_id) if m["role"] == "assistant"][-1]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path
