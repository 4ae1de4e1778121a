"""The chat page against a real server: a streamed Markdown reply, a reload in the middle of a reply, a reply
that goes on in the background, Stop."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from uikit import Chat, new_context

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("streams")]

STORY = "Write a long story about a dragon who learns to bake bread, in many paragraphs."
LONG_REPLY = {"max_tokens": 120}  # ~15 s on a busy 2-core machine: time to reload, switch or stop


def test_reply_streams_and_renders_markdown(chat):
    chat.open()
    chat.screenshot("empty")
    # Shift+Enter is a new line in the message, Enter sends it
    chat.page.click("#input")
    chat.page.keyboard.type("Write a Python function that adds two numbers.")
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.type("Put it in a code block.")
    assert chat.page.input_value("#input") == "Write a Python function that adds two numbers.\nPut it in a code block."
    assert chat.page.locator("article.msg").count() == 0
    chat.page.keyboard.press("Enter")

    chat.wait_reply_chars(3)
    assert chat.page.locator("article.msg.assistant[data-status=streaming] .body").inner_text().strip()
    assert chat.page.is_visible("#stop") and not chat.page.is_visible("#send")
    chat.wait_done()

    user = chat.page.locator("article.msg.user .body").inner_text()
    assert user == "Write a Python function that adds two numbers.\nPut it in a code block."
    reply = chat.last_reply()
    stored = chat.stored_reply()
    assert "```" in stored["content"]
    assert reply.locator("pre code.hljs").count() >= 1  # the fenced block, highlighted
    assert reply.locator("pre code.hljs").first.inner_text().strip() in stored["content"]
    assert stored["content"] == chat.server.replay_text(chat.conv_id)
    speed = reply.locator("[data-testid=msg-speed]").inner_text()
    assert re.fullmatch(r"\d+ tokens · [\d.]+ t/s", speed), speed
    assert chat.page.is_visible("#send") and not chat.page.is_visible("#stop")
    chat.screenshot("chat")


def test_reload_mid_reply_continues_where_it_was(browser, server):
    ctx = new_context(browser, LONG_REPLY)
    chat = Chat(ctx.new_page(), server).open()
    chat.send(STORY)
    before = chat.wait_reply_chars(40)
    cid = chat.conv_id
    reattached = []
    chat.page.on("request", lambda r: "/v1/stream?" in r.url and reattached.append(r.url))

    chat.page.reload()
    chat.page.wait_for_function("window.llamacpy && window.llamacpy.app.ready")
    assert server.is_generating(cid), "the reply ended before the reload: make it longer"
    chat.page.wait_for_selector("article.msg.assistant[data-status=streaming]")
    chat.screenshot("reload-resumed")
    chat.wait_done()

    final = chat.stored_reply(cid)["content"]
    assert final == server.replay_text(cid)  # nothing duplicated, nothing missing
    assert final.startswith(before) and len(final) > len(before)
    assert chat.page.locator(f"#conversations li[data-id='{cid}']").get_attribute("data-running") == "false"
    # it continued from the byte offset it had parsed, not from the start
    assert reattached, "the page did not reattach to the stream"
    query = parse_qs(urlparse(reattached[0]).query)
    assert query["conv_id"] == [cid] and int(query["from"][0]) > 0
    ctx.close()
    assert not chat.errors, chat.errors


def never_ends_early(route):
    """The reply runs to max_tokens whatever the model says: the offline phase must not outlast it."""
    route.continue_(post_data=json.dumps({**route.request.post_data_json, "ignore_eos": True}))


def test_dropped_connections_resume(browser, server):
    ctx = new_context(browser, {"max_tokens": 1000})  # ~8 s at full speed, ~30 s on a busy machine
    ctx.route("**/v1/chat/completions", never_ends_early)
    chat = Chat(ctx.new_page(), server).open()
    reattached, failed = [], []
    chat.page.on("request", lambda r: "/v1/stream?" in r.url and reattached.append(r.url))
    chat.page.on("requestfailed", lambda r: "/v1/stream?" in r.url and failed.append(r.url))
    chat.send(STORY)
    chat.wait_reply_chars(20)
    cid = chat.conv_id
    gen = "[...window.llamacpy.app.gens.values()][0]"

    # the socket dies: the page reattaches from its offset
    chat.page.evaluate(f"{gen}.reader.cancel()")
    chat.page.wait_for_function("() => document.querySelectorAll('article.msg.assistant').length === 1")
    n = len(chat.live_text())
    chat.wait_reply_chars(n + 10)
    assert len(reattached) == 1

    # the network goes away for a while (reconnections fail), then comes back
    ctx.set_offline(True)
    chat.page.evaluate(f"{gen}.reader.cancel()")
    chat.page.wait_for_function(f"{gen}.state === 'resuming'", timeout=15_000)
    time.sleep(2)
    assert failed, "no reconnection was attempted while offline"
    ctx.set_offline(False)
    chat.page.wait_for_function(f"{gen}.state === 'streaming'", timeout=15_000)
    chat.wait_reply_chars(len(chat.live_text()) + 10)

    # a tab coming back after a while with a silent socket (a phone's background tab) reconnects
    k = len(reattached)
    chat.page.evaluate(f"""() => {{
        {gen}.lastBytesAt = 0;
        Object.defineProperty(document, 'visibilityState', {{value: 'visible', configurable: true}});
        document.dispatchEvent(new Event('visibilitychange'));
    }}""")
    chat.page.wait_for_function(f"() => {gen} === undefined || {gen}.state === 'streaming'")
    chat.wait_done(timeout=240_000)
    assert len(reattached) > k
    assert chat.stored_reply(cid)["content"] == server.replay_text(cid)
    offsets = [int(parse_qs(urlparse(u).query)["from"][0]) for u in reattached]
    assert offsets == sorted(offsets) and offsets[0] > 0
    ctx.close()
    assert not chat.errors, chat.errors


def test_background_conversation_shows_spinner_until_done(browser, server):
    ctx = new_context(browser)
    chat = Chat(ctx.new_page(), server).open()
    chat.send("Say hello.")
    chat.wait_done()
    b = chat.conv_id

    # A: a new chat whose settings ask for a long reply (the settings dialog, before the first message)
    chat.page.click("#new-chat")
    chat.page.click("#settings-button")
    chat.page.fill("#setting-max_tokens", str(LONG_REPLY["max_tokens"]))
    chat.page.click("#settings-form button[type=submit]")
    chat.send(STORY)
    chat.wait_reply_chars(10)
    a = chat.conv_id
    chat.page.click(f"#conversations li[data-id='{b}'] a")
    chat.page.wait_for_function("id => location.hash === '#/c/' + id", arg=b)
    spinner_a = f"#conversations li[data-id='{a}'][data-running=true] .spinner"
    assert chat.page.is_visible(spinner_a)

    # another tab of the same browser sees it generating too
    other = Chat(ctx.new_page(), server).open(f"/#/c/{b}")
    other.page.wait_for_selector(spinner_a, state="visible", timeout=10_000)
    chat.page.bring_to_front()
    chat.screenshot("sidebar-spinner")

    while server.is_generating(a):
        assert chat.page.is_visible(spinner_a) or not server.is_generating(a)
        assert other.page.is_visible(spinner_a) or not server.is_generating(a)
        time.sleep(0.5)
    for page in (chat.page, other.page):
        page.wait_for_selector(spinner_a, state="detached", timeout=10_000)
    chat.page.click(f"#conversations li[data-id='{a}'] a")
    chat.wait_done()
    assert chat.stored_reply(a)["content"] == server.replay_text(a)
    ctx.close()
    assert not chat.errors and not other.errors, chat.errors + other.errors


def test_stop_keeps_the_partial_reply_and_frees_the_slot(browser, server):
    ctx = new_context(browser, {"max_tokens": 400})
    chat = Chat(ctx.new_page(), server).open()
    chat.send(STORY)
    chat.wait_reply_chars(30)
    cid = chat.conv_id
    deletes = []
    chat.page.on("request", lambda r: r.method == "DELETE" and deletes.append(r.url))

    assert server.slots_busy()[0] == 1
    chat.page.click("#stop")
    chat.page.wait_for_selector("article.msg.assistant[data-status=stopped]")  # the server confirmed the DELETE
    # from then on the slot finishes at most the step it was in (a busy machine makes steps slow, so count
    # tokens; a fast one decodes a few between the click and the DELETE, so count from the confirmation)
    n_at_stop = server.slots_busy()[1]
    n_last, deadline = n_at_stop, time.monotonic() + 20
    while (busy := server.slots_busy())[0]:
        n_last = max(n_last, busy[1])
        assert time.monotonic() < deadline, "a slot is still generating after Stop"
        time.sleep(0.05)
    assert n_last - n_at_stop <= 2, f"{n_last - n_at_stop} tokens generated after Stop"
    assert not server.is_generating(cid)
    assert deletes and parse_qs(urlparse(deletes[0]).query) == {"conv_id": [cid]}

    partial = chat.stored_reply(cid)
    assert partial["status"] == "stopped" and len(partial["content"]) >= 30
    assert chat.last_reply().locator("[data-testid=msg-state]").inner_text() == "stopped"
    chat.screenshot("stopped")
    chat.page.reload()
    chat.page.wait_for_function("window.llamacpy && window.llamacpy.app.ready")
    chat.page.wait_for_selector("article.msg.assistant[data-status=stopped]")
    assert chat.stored_reply(cid)["content"] == partial["content"]
    assert chat.page.locator(f"#conversations li[data-id='{cid}']").get_attribute("data-running") == "false"
    ctx.close()
    assert not chat.errors, chat.errors


def test_stop_before_the_first_token(browser, server):
    """Stop while the server is still reading the prompt: the generation must not go on unseen."""
    ctx = new_context(browser, {"max_tokens": 400})
    chat = Chat(ctx.new_page(), server).open()
    chat.send(STORY)
    chat.page.click("#stop")
    chat.page.wait_for_selector("article.msg.assistant[data-status=stopped]")
    cid = chat.conv_id
    deadline = time.monotonic() + 10
    while server.slots_busy()[0] or server.is_generating(cid):
        assert time.monotonic() < deadline, "the reply is still being generated after Stop"
        time.sleep(0.1)
    assert chat.page.locator("#send").is_visible()
    ctx.close()
    assert not chat.errors, chat.errors
