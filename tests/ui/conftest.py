"""Browser tests of the web UI: Debian's chromium driven by Playwright, against a real server and model.

Chromium comes from apt (`.ci/run` installs it), never from `playwright install`. Each test gets a fresh
browser context (empty IndexedDB and localStorage). Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from uikit import CHROMIUM, CHROMIUM_ARGS, Chat, UiRouter, UiServer, new_context


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")  # not "session": Playwright's sync API runs an asyncio loop on this thread
def browser(chromium_path: Path):  # until it stops, and asyncio.run() in later tests would fail
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def server(smollm2_path: Path) -> Iterator[UiServer]:
    s = UiServer(smollm2_path)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def streams(server: UiServer) -> UiServer:
    """The server, once it has resumable streams (X-Conversation-Id, /v1/stream, /v1/streams/lookup)."""
    if server.http.post("/v1/streams/lookup", json={"conversation_ids": []}).status_code == 404:
        pytest.skip("the server has no resumable stream routes yet")
    return server


# the router's models: one from its --models-dir, one from its preset whose name has a slash
ROUTER_DIR_MODEL, ROUTER_PRESET_MODEL = "gemma", "team/smol"


@pytest.fixture(scope="module")
def router(tmp_path_factory, smollm2_path: Path, gemma_path: Path) -> Iterator[UiRouter]:
    """A real router (`--models-dir` + `--models-preset`) with two real models, none loaded at first."""
    from routerkit import RouterProcess, models_dir

    root = tmp_path_factory.mktemp("router")
    preset = root / "preset.ini"
    preset.write_text(f"version = 1\n\n[{ROUTER_PRESET_MODEL}]\nmodel = {smollm2_path}\n")
    r = RouterProcess("--models-dir", str(models_dir(root, {ROUTER_DIR_MODEL: gemma_path})),
                      "--models-preset", str(preset), "--models-max", "2", "-c", "1024", "-np", "2", "-t", "1")
    yield UiRouter(r)
    r.http.close()
    r.stop()
    Path(r.log.name).unlink(missing_ok=True)


@pytest.fixture
def chat(browser, server) -> Iterator[Chat]:
    ctx = new_context(browser)
    c = Chat(ctx.new_page(), server)
    yield c
    ctx.close()
    assert not c.errors, f"JavaScript errors: {c.errors}"
