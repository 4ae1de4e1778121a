"""The page's modules in the browser, without a model: byte-exact SSE line reading, the frozen stream identity,
picking the live session, sanitizing, export/import. (llama.cpp's UI has the same unit tests in vitest.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.responses import JSONResponse

from llamacpy.ui import WebUI


async def _no_api(scope, receive, send):
    await JSONResponse({"error": {"code": 404, "message": "File Not Found"}}, status_code=404)(scope, receive, send)


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(WebUI(_no_api), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser, origin):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.route(f"{origin}/blank", lambda route: route.fulfill(body="<!doctype html><title>t</title>",
                                                              content_type="text/html"))
    page.goto(f"{origin}/blank")
    yield page
    ctx.close()


def test_sse_lines_count_bytes_and_never_split_characters(page):
    result = page.evaluate("""async () => {
        const { readLines, dataOf, DONE } = await import('/ui/js/sse.js');
        const enc = new TextEncoder();
        const body = enc.encode('data: {"a":"é"}\\n\\n:\\n\\ndata: {"b":"日本"}\\r\\n\\ndata: [DONE]\\n\\ndata: {"after":1}\\n\\n');
        // cut inside "é", inside "日", between \\r and \\n
        const cuts = [13, 31, 36, body.length];
        let start = 0;
        const chunks = cuts.map((c) => { const piece = body.slice(start, c); start = c; return piece; });
        const stream = new ReadableStream({ pull(ctl) { chunks.length ? ctl.enqueue(chunks.shift()) : ctl.close(); } });
        const lines = [];
        let offset = 0, parsedChunks = 0;
        const end = await readLines(stream.getReader(), (line, n) => {
            lines.push(line); offset += n;
            return dataOf(line) === DONE ? DONE : undefined;
        }, () => parsedChunks++);
        const partial = new ReadableStream({ start(ctl) { ctl.enqueue(enc.encode('data: 1\\ndata: 2')); ctl.close(); } });
        let partialOffset = 0;
        const partialEnd = await readLines(partial.getReader(), (line, n) => { partialOffset += n; });
        return { lines, offset, end, parsedChunks, doneAt: body.indexOf(10, body.indexOf(enc.encode('[DONE]')[0])) + 1,
                 partialOffset, partialEnd, data: dataOf(lines[0]), comment: dataOf(':') };
    }""")
    assert result["lines"] == ['data: {"a":"é"}', "", ":", "", 'data: {"b":"日本"}', "", "data: [DONE]"]
    assert result["end"] == {"done": True, "error": None}
    assert result["data"] == {"a": "é"} and result["comment"] is None
    # the offset is the byte just after the [DONE] line: what ?from= would resume at
    assert result["offset"] == len('data: {"a":"é"}\n\n:\n\ndata: {"b":"日本"}\r\n\ndata: [DONE]\n'.encode())
    assert result["partialOffset"] == len(b"data: 1\n")  # a trailing partial line is not counted
    assert result["partialEnd"] == {"done": False, "error": None}


def test_stream_identity_and_resume_state(page):
    r = page.evaluate("""async () => {
        const resume = await import('/ui/js/resume.js');
        const out = {};
        out.bare = resume.identity('c1', null);
        out.withModel = resume.identity('c1', 'org/model:Q4');
        out.convOf = resume.convIdOf('c1::org/model:Q4');
        out.nothingSaved = resume.frozenModel('c1', 'picker');
        resume.save('c1', { bytesReceived: 10, model: null });
        out.frozenNull = resume.frozenModel('c1', 'picker');  // a persisted null wins over the picker
        resume.save('c2', { bytesReceived: 5, model: 'm1' });
        out.frozenModel = resume.frozenModel('c2', 'picker');
        out.saved = resume.read('c2');
        localStorage.setItem(resume.PREFIX + 'c3', '{not json');
        out.corrupted = resume.read('c3');
        out.corruptedFallback = resume.frozenModel('c3', 'picker');
        resume.clear('c2');
        out.cleared = resume.read('c2');
        out.other = resume.read('c1').bytesReceived;  // conversations do not share state
        return out;
    }""")
    assert r["bare"] == "c1" and r["withModel"] == "c1::org/model:Q4" and r["convOf"] == "c1"
    assert r["nothingSaved"] == "picker" and r["frozenNull"] is None and r["frozenModel"] == "m1"
    assert r["saved"]["bytesReceived"] == 5 and r["saved"]["model"] == "m1" and r["saved"]["updatedAt"] > 0
    assert r["corrupted"] is None and r["corruptedFallback"] == "picker"
    assert r["cleared"] is None and r["other"] == 10


def test_the_live_session_is_chosen_like_llama_cpp(page):
    r = page.evaluate("""async () => {
        const { selectActive } = await import('/ui/js/api.js');
        const s = (id, done, t) => ({ conversation_id: id, is_done: done, started_at: t });
        return [
            selectActive([]),
            selectActive([s('a', true, 5)]),
            selectActive([s('a', true, 9), s('a::m', false, 3)]).conversation_id,
            selectActive([s('x', false, 3), s('y', false, 7), s('z', false, 5)]).conversation_id,
            selectActive([s('first', false, 4), s('second', false, 4)]).conversation_id,
        ];
    }""")
    assert r == [None, None, "a::m", "y", "first"]


def test_markdown_is_sanitized(page):
    r = page.evaluate("""async () => {
        const { toHtml } = await import('/ui/js/markdown.js');
        return {
            img: toHtml('<img src=x onerror="alert(1)">'),
            script: toHtml('hi <script>alert(1)</script>'),
            link: toHtml('[x](javascript:alert(1)) [y](https://example.com)'),
            md: toHtml('# T\\n\\n**b** `c`\\n\\n| a | b |\\n|---|---|\\n| 1 | 2 |'),
        };
    }""")
    assert "onerror" not in r["img"] and "<script" not in r["script"]
    assert "javascript:" not in r["link"]
    assert 'href="https://example.com"' in r["link"] and 'rel="noopener noreferrer"' in r["link"]
    assert "<h1>T</h1>" in r["md"] and "<strong>b</strong>" in r["md"] and "<table>" in r["md"]


def test_export_import_round_trip(page):
    r = page.evaluate("""async () => {
        const db = await import('/ui/js/db.js');
        const conv = { id: 'c1', name: 'One', createdAt: 1, updatedAt: 1, model: null, settings: db.defaultSettings() };
        await db.putConversation(conv);
        await db.putMessage({ id: 'm1', convId: 'c1', seq: 0, role: 'user', content: 'hi', status: 'done' });
        await db.putMessage({ id: 'm2', convId: 'c1', seq: 1, role: 'assistant', content: 'part', status: 'streaming',
                              stream: { identity: 'c1', offset: 99 } });
        const exported = await db.exportAll();
        const n = await db.importAll(JSON.parse(JSON.stringify(exported)));  // the same ids again
        const convs = await db.listConversations();
        const copy = convs.find((c) => c.id !== 'c1');
        const msgs = await db.getMessages(copy.id);
        let bad = null;
        try { await db.importAll({ conversations: [{ name: 'x' }] }); } catch (e) { bad = e.message; }
        return { n, count: convs.length, exportedStream: 'stream' in exported.conversations[0].messages[1],
                 copyName: copy.name, msgs: msgs.map((m) => [m.role, m.content, m.status]), bad };
    }""")
    assert r["n"] == 1 and r["count"] == 2 and r["copyName"] == "One"
    assert r["exportedStream"] is False  # stream offsets are local state, not exported
    assert r["msgs"] == [["user", "hi", "done"], ["assistant", "part", "interrupted"]]
    assert "messages" in r["bad"]
