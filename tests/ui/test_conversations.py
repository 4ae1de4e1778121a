"""Conversations in the browser: import, rename, export, delete; per-conversation settings; edit and
regenerate; the phone-sized layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from uikit import Chat, new_context

pytestmark = pytest.mark.slow

EXPORT = {
    "format": "llamacpy-conversations",
    "version": 1,
    "conversations": [{
        "id": "imported1", "name": "Imported chat", "createdAt": 1, "updatedAt": 2,
        "settings": {"system": "", "temperature": 0.5, "top_p": 0.9, "max_tokens": 32},
        "messages": [
            {"role": "user", "content": "What is 2+2? <img src=x onerror=alert(1)>"},
            {"role": "assistant", "content": "It is **4**.\n\n```python\nprint(2 + 2)\n```\n\n<script>alert(1)</script>"},
        ],
    }],
}


def test_import_rename_export_delete(chat):
    chat.open()
    chat.page.set_input_files("#import", files=[{"name": "chats.json", "mimeType": "application/json",
                                                 "buffer": json.dumps(EXPORT).encode()}])
    item = chat.page.locator("#conversations li[data-id='imported1']")
    item.wait_for()
    item.locator("a").click()
    chat.page.wait_for_selector("article.msg.assistant")
    reply = chat.last_reply()
    assert reply.locator("strong").inner_text() == "4"
    assert reply.locator("pre code.hljs").inner_text().strip() == "print(2 + 2)"
    assert reply.locator("script").count() == 0  # sanitized
    assert chat.page.locator("article.msg.user img").count() == 0  # user text is text
    assert "<img src=x" in chat.page.locator("article.msg.user .body").inner_text()

    item.locator("button.rename").click()
    chat.page.fill("#conversations .rename-input", "Arithmetic")
    chat.page.press("#conversations .rename-input", "Enter")
    chat.page.wait_for_selector("#conversations li[data-id='imported1'] a:text('Arithmetic')")
    assert chat.page.inner_text("#title") == "Arithmetic"
    chat.screenshot("imported")
    chat.page.emulate_media(color_scheme="dark")
    chat.screenshot("imported-dark")
    chat.page.emulate_media(color_scheme="light")

    with chat.page.expect_download() as download:
        chat.page.click("#export")
    exported = json.loads(Path(download.value.path()).read_text())
    (conv,) = exported["conversations"]
    assert conv["name"] == "Arithmetic" and conv["settings"]["max_tokens"] == 32
    assert [m["content"] for m in conv["messages"]] == [m["content"] for m in EXPORT["conversations"][0]["messages"]]

    chat.page.once("dialog", lambda d: d.accept())
    chat.page.locator("#conversations li[data-id='imported1'] button.delete").click()
    item.wait_for(state="detached")
    assert chat.page.evaluate("window.llamacpy.db.listConversations()") == []
    assert chat.page.inner_text("#title") == "New chat"


def _fill_settings(page, **values) -> None:
    page.click("#settings-button")
    for key, value in values.items():
        page.fill(f"#setting-{key}", str(value))
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("#settings-dialog", state="hidden")


@pytest.mark.usefixtures("streams")
def test_settings_edit_and_regenerate(chat):
    posts = []
    chat.page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and posts.append(r))
    chat.open()
    _fill_settings(chat.page, system="You are terse.", temperature=0.3, top_p=0.5, max_tokens=12)
    chat.send("Name a colour.")
    chat.wait_done()
    cid = chat.conv_id
    body = posts[0].post_data_json
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Name a colour."}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stream"]) == (0.3, 0.5, 12, True)
    assert "model" not in body  # a single-model server: no model named, the id has no ::model suffix
    assert posts[0].headers["x-conversation-id"] == cid

    chat.mark()
    chat.page.click("article.msg.assistant button:text('Regenerate')")
    chat.wait_done()
    assert len(posts) == 2 and posts[1].post_data_json["messages"] == body["messages"]
    assert [m["role"] for m in chat.stored_messages()] == ["user", "assistant"]

    chat.mark()
    chat.page.click("article.msg.user button:text('Edit')")
    chat.page.fill("article.msg.user .edit-input", "Name a fruit.")
    chat.page.press("article.msg.user .edit-input", "Enter")
    chat.wait_done()
    assert posts[2].post_data_json["messages"][-1] == {"role": "user", "content": "Name a fruit."}
    stored = chat.stored_messages()
    assert [(m["role"], m["status"]) for m in stored] == [("user", "done"), ("assistant", "done")]
    assert stored[0]["content"] == "Name a fruit."

    # settings belong to the conversation: another one changes its own, this one keeps 12
    chat.page.click("#new-chat")
    chat.send("Hi")
    chat.wait_done()
    _fill_settings(chat.page, max_tokens=20)
    chat.page.click(f"#conversations li[data-id='{cid}'] a")
    chat.page.wait_for_function("id => location.hash === '#/c/' + id", arg=cid)
    chat.page.click("#settings-button")
    assert chat.page.input_value("#setting-max_tokens") == "12"
    assert chat.page.input_value("#setting-system") == "You are terse."
    chat.screenshot("settings")
    chat.page.click("#settings-cancel")


@pytest.mark.usefixtures("streams")
def test_phone_sized_screen(browser, server):
    ctx = new_context(browser, viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True,
                      device_scale_factor=2)
    chat = Chat(ctx.new_page(), server).open()
    assert chat.page.locator("#sidebar").bounding_box()["x"] < 0  # the list is a drawer, closed
    chat.send("Give me three tips for learning to cook, as a list.")
    chat.wait_done()
    box = chat.page.locator("#input").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert chat.page.locator("#send").is_visible()
    chat.screenshot("phone-chat")
    chat.page.click("#open-sidebar")
    chat.page.wait_for_function("document.querySelector('#sidebar').getBoundingClientRect().x >= 0")
    chat.screenshot("phone-sidebar")
    chat.page.locator("#conversations li a").first.click()
    chat.page.wait_for_function("document.querySelector('#sidebar').getBoundingClientRect().right <= 0")
    ctx.close()
    assert not chat.errors, chat.errors
