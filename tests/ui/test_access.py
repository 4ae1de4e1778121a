"""The API key prompt (`--api-key` servers) and the model picker (single model, router answers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from uikit import Chat, UiServer, new_context

pytestmark = pytest.mark.slow

KEY = "ui-test-key"
PUBLIC = ("/health", "/v1/models", "/models")


@pytest.fixture(scope="module")
def key_server(smollm2_path: Path) -> Iterator[UiServer]:
    s = UiServer(smollm2_path, "-np", "1", key=KEY)
    yield s
    s.stop()


def test_api_key_is_asked_once_and_sent_everywhere(browser, key_server):
    if key_server.http.post("/v1/streams/lookup", json={"conversation_ids": []}).status_code == 404:
        pytest.skip("the server has no resumable stream routes yet")
    ctx = new_context(browser, {"max_tokens": 40})
    page = ctx.new_page()
    api_requests = []
    page.on("request", lambda r: "/ui/" not in r.url and not r.url.endswith("/") and api_requests.append(r))
    chat = Chat(page, key_server)
    page.goto(key_server.url)
    page.wait_for_selector("#key-dialog[open]")
    chat.screenshot("api-key")
    page.fill("#key-input", KEY)
    page.press("#key-input", "Enter")
    page.wait_for_function("window.llamacpy && window.llamacpy.app.ready")

    chat.send("Tell me about the moon.")
    chat.wait_reply_chars(10)
    page.evaluate("[...window.llamacpy.app.gens.values()][0].reader.cancel()")  # a dropped connection
    chat.wait_done()
    assert chat.stored_reply()["content"] == key_server.replay_text(chat.conv_id)

    page.reload()  # the key is remembered: no second prompt
    page.wait_for_function("window.llamacpy && window.llamacpy.app.ready")
    assert not page.is_visible("#key-dialog")

    paths = {}
    for r in api_requests:
        path = r.url[len(key_server.url):].split("?")[0]
        paths.setdefault(path, []).append(r)
    assert {"/v1/chat/completions", "/v1/stream", "/v1/streams/lookup", "/props"} <= set(paths)
    for path, requests in paths.items():
        if path in PUBLIC:
            continue
        unanswered = [r for r in requests if r.headers.get("authorization") != f"Bearer {KEY}"]
        # only the very first /props goes out before the key is known (its 401 opens the prompt)
        assert not unanswered or (path == "/props" and len(unanswered) == 1), (path, len(unanswered))
    ctx.close()
    assert not chat.errors, chat.errors


def test_model_picker_single_model(chat, server):
    chat.open()
    (model,) = server.http.get("/v1/models").json()["data"]
    options = chat.page.locator("#model-picker option")
    assert options.count() == 1 and options.first.get_attribute("value") == model["id"]
    assert chat.page.is_disabled("#model-picker")


@pytest.mark.usefixtures("streams")
def test_model_picker_with_router_answers(browser, server):
    """Router mode's /props and /v1/models answers (mocked in the page) in front of a real single server:
    the picker shows each model's status, the request names the chosen model and the conversation id
    carries it (`<conv>::<model>`), frozen at send time for Stop even when the picker changes."""
    (real,) = server.http.get("/v1/models").json()["data"]
    data = [{"id": real["id"], "status": {"value": "loaded"}},
            {"id": "other-model", "status": {"value": "unloaded", "failed": True, "exit_code": 1}}]
    ctx = new_context(browser, {"max_tokens": 300})
    page = ctx.new_page()
    page.route("**/props", lambda route: route.fulfill(
        json={"role": "router", "model_alias": "llama-server", "model_path": "none"}))
    page.route("**/v1/models", lambda route: route.fulfill(json={"object": "list", "data": data}))
    posts, deletes = [], []
    page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and posts.append(r))
    page.on("request", lambda r: r.method == "DELETE" and deletes.append(r.url))
    chat = Chat(page, server).open()
    options = page.locator("#model-picker option")
    texts = [options.nth(i).inner_text() for i in range(options.count())]
    assert texts[0].endswith("(loaded)") and texts[1] == "other-model (unloaded, failed)"
    assert not page.is_disabled("#model-picker")
    page.select_option("#model-picker", real["id"])
    chat.screenshot("router-picker")

    chat.send("Write a long story about a lighthouse keeper.")
    chat.wait_reply_chars(10)
    cid = chat.conv_id
    assert posts[0].post_data_json["model"] == real["id"]
    identity = f"{cid}::{real['id']}"
    assert posts[0].headers["x-conversation-id"] == identity
    assert json.loads(page.evaluate(f"localStorage.getItem('llamacpy.streamResume.{cid}')"))["model"] == real["id"]
    page.select_option("#model-picker", "other-model")  # changing the picker mid-reply changes nothing
    page.click("#stop")
    page.wait_for_selector("article.msg.assistant[data-status=stopped]")
    assert deletes and parse_qs(urlparse(deletes[0]).query) == {"conv_id": [identity]}
    assert not server.is_generating(identity)
    ctx.close()
    assert not chat.errors, chat.errors


@pytest.mark.skip(reason="router mode (issue 5) is not implemented yet: the picker is tested against mocked "
                         "router answers above")
def test_model_picker_router_mode():
    """With a real router: pick each of two models, both reply, statuses follow loading/loaded."""
