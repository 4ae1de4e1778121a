"""The API key prompt (`--api-key` servers) and the model picker (single model, router answers)."""

from __future__ import annotations

import json
import time
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


def never_ends_early(route):
    """The reply runs to max_tokens whatever the model says (a fast machine must not finish it too soon)."""
    route.continue_(post_data=json.dumps({**route.request.post_data_json, "ignore_eos": True}))


def picker_statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all("#model-picker option",
                                     "os => Object.fromEntries(os.map(o => [o.value, o.textContent]))")


def wait_router_status(page, router, model: str, value: str, timeout: float = 120.0) -> None:
    """Poll the router while the page's event loop runs (a routed request waits on it: never time.sleep)."""
    deadline = time.monotonic() + timeout
    while (status := router.statuses()[model])["value"] != value:
        assert time.monotonic() < deadline, f"{model} is {status}, not {value}, after {timeout} s"
        page.wait_for_timeout(50)


def test_model_picker_router_mode(browser, router):
    """A real router with two real models, none loaded: the picker lists both with their status; each model,
    picked in turn, is loaded on demand (unloaded -> loading -> loaded, shown when the picker refreshes) and
    replies; requests name the picked model and `<conv>::<model>`; with a model named `team/smol`, a reload
    mid-reply reattaches through the router and completes, and Stop stops the child's generation."""
    gemma, smol = "gemma", "team/smol"
    assert {m: s["value"] for m, s in router.statuses().items()} == {gemma: "unloaded", smol: "unloaded"}
    ctx = new_context(browser, {"max_tokens": 24})
    ctx.route("**/v1/chat/completions", never_ends_early)
    page = ctx.new_page()
    posts, deletes, reattached = [], [], []
    page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and posts.append(r))
    page.on("request", lambda r: r.method == "DELETE" and deletes.append(r.url))
    page.on("request", lambda r: "/v1/stream?" in r.url and r.method == "GET" and reattached.append(r.url))
    chat = Chat(page, router).open()
    assert picker_statuses(page) == {gemma: "gemma (unloaded)", smol: "team/smol (unloaded)"}
    assert not page.is_disabled("#model-picker")

    # the first model: loaded by the first message that names it
    page.select_option("#model-picker", gemma)
    chat.send("Say hello.")
    wait_router_status(page, router, gemma, "loading")
    page.focus("#model-picker")  # the picker refreshes its list on focus
    page.wait_for_selector(f"#model-picker option[value='{gemma}']:not([data-status=unloaded])",
                           state="attached")
    shown = page.get_attribute(f"#model-picker option[value='{gemma}']", "data-status")
    assert shown == "loading" or router.statuses()[gemma]["value"] == "loaded", shown
    chat.wait_done()
    a = chat.conv_id
    assert posts[0].post_data_json["model"] == gemma
    assert posts[0].headers["x-conversation-id"] == f"{a}::{gemma}"
    reply_a = chat.stored_reply(a)["content"]
    assert reply_a and reply_a == router.replay_text(f"{a}::{gemma}")
    # after a reply the picker refreshes by itself
    page.wait_for_function("m => document.querySelector(`#model-picker option[value='${m}']`)"
                           ".dataset.status === 'loaded'", arg=gemma)
    assert router.statuses()[smol]["value"] == "unloaded"

    # the second model, named with a slash, in a new chat: a long reply, the page reloaded in its middle
    page.click("#new-chat")
    page.wait_for_function("location.hash === '#/'")
    page.select_option("#model-picker", smol)
    page.click("#settings-button")
    page.fill("#setting-max_tokens", "400")  # within a slot's 512 tokens (-c 1024 -np 2)
    page.click("#settings-form button[type=submit]")
    chat.send("Write a long story about a lighthouse keeper.")
    before = chat.wait_reply_chars(40, timeout=120_000)
    b = chat.conv_id
    identity = f"{b}::{smol}"
    assert b != a and posts[1].post_data_json["model"] == smol
    assert posts[1].headers["x-conversation-id"] == identity
    assert router.statuses()[smol]["value"] == "loaded"
    assert router.is_generating(identity), "the reply ended before the reload: make it longer"
    page.reload()
    chat.ended_before = 0  # the reloaded page counts the replies it follows from 0: this one is its first
    page.wait_for_function("window.llamacpy && window.llamacpy.app.ready")
    chat.wait_done(timeout=240_000)
    final = chat.stored_reply(b)["content"]
    assert final == router.replay_text(identity)  # nothing duplicated, nothing missing
    assert final.startswith(before) and len(final) > len(before)
    assert reattached, "the page did not reattach to the stream"
    query = parse_qs(urlparse(reattached[0]).query)
    assert reattached[0].startswith(router.url)
    assert query["conv_id"] == [identity] and int(query["from"][0]) > 0
    page.wait_for_function("() => [...document.querySelectorAll('#model-picker option')]"
                           ".every(o => o.dataset.status === 'loaded')")
    assert picker_statuses(page) == {gemma: "gemma (loaded)", smol: "team/smol (loaded)"}
    assert {m: s["value"] for m, s in router.statuses().items()} == {gemma: "loaded", smol: "loaded"}
    chat.screenshot("router-picker-real")

    # Stop, through the router: the child stops generating (count tokens: a busy machine makes steps slow)
    page.click("#new-chat")
    page.wait_for_function("location.hash === '#/'")
    assert page.input_value("#model-picker") == smol
    chat.send("Write a long story about a dragon who bakes bread.")
    chat.wait_reply_chars(30, timeout=120_000)
    c = chat.conv_id
    identity = f"{c}::{smol}"
    assert posts[-1].headers["x-conversation-id"] == identity
    page.click("#stop")
    page.wait_for_selector("article.msg.assistant[data-status=stopped]")  # the router confirmed the DELETE
    assert deletes and parse_qs(urlparse(deletes[-1]).query) == {"conv_id": [identity]}
    n_at_stop = router.slots_busy(smol)[1]
    n_last, deadline = n_at_stop, time.monotonic() + 20
    while (busy := router.slots_busy(smol))[0]:
        n_last = max(n_last, busy[1])
        assert time.monotonic() < deadline, "the child is still generating after Stop"
        time.sleep(0.05)
    assert n_last - n_at_stop <= 2, f"{n_last - n_at_stop} tokens generated after Stop"
    assert not router.is_generating(identity)
    partial = chat.stored_reply(c)
    assert partial["status"] == "stopped" and len(partial["content"]) >= 30
    ctx.close()
    assert not chat.errors, chat.errors


def test_router_picker_follows_status_events(browser, router):
    """Loads and unloads made elsewhere (here: the API) show in the open page's picker without a touch: the
    page follows the router's /models/sse."""
    gemma = "gemma"
    if router.statuses()[gemma]["value"] != "unloaded":
        router.http.post("/models/unload", json={"model": gemma})
    ctx = new_context(browser)
    page = ctx.new_page()
    chat = Chat(page, router).open()
    shown = "m => document.querySelector(`#model-picker option[value='${m}']`).dataset.status"
    page.wait_for_function(f"m => ({shown})(m) === 'unloaded'", arg=gemma)
    assert router.http.post("/models/load", json={"model": gemma}).json() == {"success": True}
    page.wait_for_function(f"m => ({shown})(m) === 'loaded'", arg=gemma, timeout=120_000)
    assert router.http.post("/models/unload", json={"model": gemma}).json() == {"success": True}
    page.wait_for_function(f"m => ({shown})(m) === 'unloaded'", arg=gemma, timeout=30_000)
    assert picker_statuses(page)[gemma] == "gemma (unloaded)"
    ctx.close()
    assert not chat.errors, chat.errors
