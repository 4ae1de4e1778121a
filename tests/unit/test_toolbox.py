"""The tools for agents (server/toolbox) without a server: the built-in tools on real files and processes, their
answers as llama-server's server-tools.cpp gives them, the isolates' command lines and checks, and real MCP
server processes (tests/data/mcp/mcp_test_server.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from llamacpy.server.toolbox import builtin
from llamacpy.server.toolbox.builtin import ParamError, glob_match, path_glob_match
from llamacpy.server.toolbox.edit import EditError, apply_edits
from llamacpy.server.toolbox.mcp import McpServers, ServerConfig, parse_config
from llamacpy.server.toolbox.runtime import (
    ContainerRuntime,
    Kind,
    RuntimeSpecError,
    SshRuntime,
    make_runtime,
    run_process,
)

MCP_SERVER = str(Path(__file__).resolve().parent.parent / "data" / "mcp" / "mcp_test_server.py")


def call(name: str, params: dict, stream=None) -> dict:
    tool = next(t for t in builtin.BUILTIN if t.name == name)
    return tool.invoke(params, stream)


def test_the_seven_tools_and_their_shape():
    names = [t.name for t in builtin.BUILTIN]
    assert names == ["read_file", "file_glob_search", "grep_search", "exec_shell_command", "write_file",
                     "edit_file", "get_info"]
    shell = builtin.BUILTIN[3].to_json()
    assert shell["type"] == "server" and shell["permissions"] == {"write": True} and shell["uses_cwd"]
    fn = shell["definition"]["function"]
    assert shell["definition"]["type"] == "function" and fn["name"] == "exec_shell_command"
    assert fn["parameters"]["required"] == ["command"] and "timeout" in fn["parameters"]["properties"]


def test_write_read_edit_roundtrip(tmp_path):
    path = str(tmp_path / "d" / "test.log")
    assert call("write_file", {"path": path, "content": "line1\nline2\nline3\n"}) == {
        "result": "file written successfully", "path": path, "bytes": 18}
    assert call("read_file", {"path": path}) == {"plain_text_response": "line1\nline2\nline3\n"}
    assert call("read_file", {"path": path, "start_line": 2, "end_line": 2, "append_loc": True}) == {
        "plain_text_response": "2\u2192line2\n"}
    res = call("edit_file", {"path": path, "edits": [{"old_text": "line2", "new_text": "line2-edited"},
                                                     {"old_text": "line3\n", "new_text": "line3\nline4\n"}]})
    assert res == {"result": "file edited successfully", "path": path, "edits_applied": 2}
    assert Path(path).read_text() == "line1\nline2-edited\nline3\nline4\n"
    assert call("read_file", {"path": str(tmp_path / "nope")}) == {"error": f"cannot stat file: {tmp_path / 'nope'}"}
    assert call("read_file", {"path": path}, None) == call("read_file", {"path": "d/test.log", "cwd": str(tmp_path)})


def test_read_file_limits_and_base64(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * 100 + "\n" * 200 + "y" * (20 << 10))
    assert call("read_file", {"path": str(big)})["error"].startswith("file too large (")
    assert call("read_file", {"path": str(big), "start_line": 1, "end_line": 1}) == {"plain_text_response": "x" * 100 + "\n"}
    assert call("read_file", {"path": str(big), "end_line": 10 ** 6})["plain_text_response"].endswith(
        "[output truncated]")
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"\0\xff\x01")
    assert call("read_file", {"path": str(raw), "resp_type": "base64"}) == {"base64": "AP8B", "size_bytes": 3}


def test_edit_file_refusals(tmp_path):
    path = str(tmp_path / "f.txt")
    Path(path).write_text("dup\ndup\n")
    assert "unique" in call("edit_file", {"path": path, "edits": [{"old_text": "dup", "new_text": "x"}]})["error"]
    Path(path).write_text("line1\nline2\n")
    err = call("edit_file", {"path": path, "edits": [{"old_text": "line1\nline2", "new_text": "a"},
                                                     {"old_text": "line2", "new_text": "b"}]})["error"]
    assert "overlap" in err
    assert call("edit_file", {"path": path, "edits": []}) == {"error": '"edits" must be a non-empty array'}
    assert "could not find edits[0]" in call("edit_file", {"path": path, "edits": [
        {"old_text": "zzz", "new_text": "b"}]})["error"]
    assert call("edit_file", {"path": path, "edits": [{"old_text": "line1", "new_text": "line1"}]}) == {
        "error": "no changes made: the replacement(s) produced identical content"}
    with pytest.raises(ParamError):
        call("edit_file", {"path": path, "edits": [{"old_text": "line1"}]})


def test_edit_fuzzy_match_keeps_the_other_lines():
    original = "keep   \nsay \u201chello\u201d  \nend\u00a0\n"
    # the old text as a model types it: ASCII quotes, no trailing spaces
    assert apply_edits(original, "f", [('say "hello"', 'say "bye"')]) == 'keep   \nsay "bye"\nend\u00a0\n'
    with pytest.raises(EditError, match="2 occurrences"):
        apply_edits("a \nb\na\n", "f", [("a", "c")])


def test_glob_search(tmp_path):
    (tmp_path / "project-alpha" / "src").mkdir(parents=True)
    (tmp_path / "project-alpha" / "README.md").write_text("alpha")
    (tmp_path / "project-alpha" / "src" / "main.cpp").write_text("int main() {}")
    (tmp_path / "build" / "nested").mkdir(parents=True)
    (tmp_path / "build" / "artifact.txt").write_text("built")
    (tmp_path / "top.txt").write_text("top")
    res = call("file_glob_search", {"path": str(tmp_path), "type": "dir"})
    assert {e["path"] for e in res["entries"]} == {"project-alpha", "project-alpha/src", "build"}
    assert "project-alpha/src/\n" in res["plain_text_response"] and res["base"] == str(tmp_path)
    res = call("file_glob_search", {"path": str(tmp_path)})
    assert [e["path"] for e in res["entries"]] == ["top.txt", "project-alpha/README.md",
                                                   "project-alpha/src/main.cpp"]
    assert call("file_glob_search", {"path": str(tmp_path), "max_depth": 1})["entries"] == [
        {"path": "top.txt", "type": "file"}]
    res = call("file_glob_search", {"path": str(tmp_path), "limit": 1})
    assert len(res["entries"]) == 1 and "Total matches: 3" in res["plain_text_response"]
    assert "1 results limit reached (3 total matches)" in res["plain_text_response"]
    assert call("file_glob_search", {"path": str(tmp_path), "include": "src/*.cpp"})["entries"] == [
        {"path": "project-alpha/src/main.cpp", "type": "file"}]
    assert "invalid type" in call("file_glob_search", {"path": str(tmp_path), "type": "bogus"})["error"]
    assert "invalid limit" in call("file_glob_search", {"path": str(tmp_path), "limit": 0})["error"]
    assert call("file_glob_search", {"path": str(tmp_path / "no")})["error"].startswith("path does not exist")


def test_glob_patterns_as_llama_cpp():
    assert glob_match("*.py", "a.py") and not glob_match("*.py", "d/a.py")
    assert glob_match("**/*.py", "d/e/a.py") and not glob_match("**/*.py", "a.py")
    assert glob_match("a?c", "abc") and not glob_match("a?c", "a/c")
    assert glob_match("[a-c]x", "bx") and not glob_match("[!a-c]x", "bx") and glob_match("[!a-c]x", "dx")
    assert glob_match("[ab", "[ab")  # no closing bracket: a literal
    assert path_glob_match("test_x.py", "a/b/test_x.py") and path_glob_match("src/*.cpp", "x/src/a.cpp")


def test_grep_search(tmp_path):
    (tmp_path / "a.txt").write_text("one\nneedle here\nthree\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("Needle too\n")
    (tmp_path / "blob.bin").write_bytes(b"needle\0binary")
    res = call("grep_search", {"path": str(tmp_path), "pattern": "needle"})["plain_text_response"]
    assert res == "a.txt:needle here\n\n---\nTotal matches: 1\n"
    res = call("grep_search", {"path": str(tmp_path), "pattern": "needle", "ignore_case": True,
                               "include": "*.md", "return_line_numbers": True})["plain_text_response"]
    assert res.startswith("sub/b.md:1:Needle too\n") and "Total matches: 1" in res
    res = call("grep_search", {"path": str(tmp_path / "a.txt"), "pattern": "needle", "context_lines": 1})
    assert res["plain_text_response"].startswith(f"{tmp_path / 'a.txt'}-1-one\n{tmp_path / 'a.txt'}:2:needle here\n")
    assert call("grep_search", {"path": str(tmp_path), "pattern": "("})["error"].startswith("invalid regex")
    assert call("grep_search", {"path": str(tmp_path), "pattern": "(", "literal": True})["plain_text_response"].endswith(
        "Total matches: 0\n")


def test_exec_shell_command(tmp_path):
    res = call("exec_shell_command", {"command": "echo hello; pwd; exit 3", "cwd": str(tmp_path)})
    assert res == {"plain_text_response": f"hello\n{tmp_path}\n\n[exit code: 3]"}
    chunks = []
    assert call("exec_shell_command", {"command": "echo a; sleep 0.2; echo b"}, lambda c: chunks.append(c) or True) == {}
    assert "".join(chunks) == "a\nb\n\n[exit code: 0]" and len(chunks) >= 2
    t0 = time.monotonic()
    res = call("exec_shell_command", {"command": "echo start; sleep 30 & sleep 30", "timeout": 1})
    assert time.monotonic() - t0 < 5
    assert res["plain_text_response"].startswith("start\n") and res["plain_text_response"].endswith(
        "[exit due to timed out]")
    res = call("exec_shell_command", {"command": "yes | head -c 100000", "max_output_size": 10})
    assert res["plain_text_response"] == "y\ny\ny\ny\ny\n\n[output truncated]\n[exit code: 0]"


def test_a_client_gone_stops_the_command():
    t0 = time.monotonic()
    res = run_process(["sh", "-c", "echo x; sleep 30"], 100, 20, on_chunk=lambda c: False)
    assert time.monotonic() - t0 < 5 and res.output == "x\n"


def test_get_info(tmp_path):
    res = call("get_info", {"cwd": str(tmp_path)})
    assert res["cwd"] == str(tmp_path) and res["os"].startswith(os.uname().sysname)


def test_runtimes_are_checked_never_the_host_instead():
    for spec, message in [("fake:x", "unknown tool runtime: fake:x"), ("ssh:-oProxyCommand=touch /tmp/p",
                          "invalid ssh target: -oProxyCommand=touch /tmp/p"),
                          ("docker-container:--privileged", "invalid container id: --privileged"),
                          ("podman-container:", "invalid container id: "),
                          ("docker:busybox", "tool runtime must name a running container: docker:busybox")]:
        with pytest.raises(RuntimeSpecError, match="^" + message.replace("(", r"\(") + "$"):
            make_runtime(spec)
    c = make_runtime("podman-container:abc123", "/work")
    assert isinstance(c, ContainerRuntime) and c.resolve("x/y") == "/work/x/y" and c.resolve("/abs") == "/abs"
    assert c.build_argv(["cat", "f"], True) == ["podman", "exec", "-i", "abc123", "cat", "f"]
    s = make_runtime("ssh:me@host.example", "")
    assert isinstance(s, SshRuntime)
    argv = s.build_argv(["sh", "-c", "echo 'hi'"], False)
    assert argv[-3:] == ["-n", "me@host.example", "'sh' '-c' 'echo '\\''hi'\\'''"] and "BatchMode=yes" in argv


def test_host_listing_uses_git_when_inside_a_repo(tmp_path):
    os.system(f"git init -q {tmp_path} && cd {tmp_path} && echo x > kept.txt && echo ignored.txt > .gitignore "
              "&& touch ignored.txt")
    listing = make_runtime("").list_entries(str(tmp_path), 0, Kind.FILES)
    assert sorted(e.rel for e in listing.entries) == [".gitignore", "kept.txt"]


# -- MCP ---------------------------------------------------------------------------------------------------------

def servers(*flags: str, timeout_ms: int = 30000, name: str = "t") -> McpServers:
    box = McpServers([ServerConfig(name, sys.executable, [MCP_SERVER, *flags], timeout_ms=timeout_ms)])
    box.warmup()
    return box


def test_config_formats():
    cfg = parse_config('{"mcpServers": {"a": {"command": "x", "args": ["1"], "env": {"K": "V"}, "timeout_ms": 5},'
                       ' "b": {"args": []}}}')
    assert cfg == [ServerConfig("a", "x", ["1"], {"K": "V"}, "", 5)]
    assert parse_config("{}") == []
    with pytest.raises(ValueError, match="failed to parse MCP config JSON"):
        parse_config("not valid json")
    with pytest.raises(ValueError, match="failed to open MCP config file"):
        McpServers.from_settings("/nonexistent/path.json", None)


def test_mcp_tools_and_calls():
    box = servers()
    try:
        assert [t.name for t in box.tools] == ["echo", "add", "fail_once", "sleep", "crash", "error"]
        assert box.tools[0].input_schema["required"] == ["message"]
        assert box.running == {}  # warm-up stopped the server again
        assert box.call("t", "echo", {"message": "hi"}, lambda: False) == {"plain_text_response": "echo: hi"}
        assert box.call("t", "add", {"a": 3, "b": 5}, lambda: False) == {"plain_text_response": "8"}
        assert box.call("t", "fail_once", {}, lambda: False) == {"error": "transient error"}
        assert box.call("t", "fail_once", {}, lambda: False) == {"plain_text_response": "ok"}
        assert box.call("t", "error", {}, lambda: False) == {"error": "it went wrong"}
        assert box.call("t", "crash", {}, lambda: False) == {"error": "transport closed"}
        # the next call respawns it
        assert box.call("t", "echo", {"message": "again"}, lambda: False) == {"plain_text_response": "echo: again"}
        assert box.call("nope", "echo", {}, lambda: False) == {"error": "MCP server unavailable: nope"}
    finally:
        box.close()


def test_mcp_notifications_and_malformed_lines_are_skipped():
    box = servers("--notify")
    try:
        for i in range(5):
            assert box.call("t", "echo", {"message": str(i)}, lambda: False) == {"plain_text_response": f"echo: {i}"}
    finally:
        box.close()


def test_mcp_timeout_then_the_late_answer_is_not_taken_for_the_next():
    box = servers(timeout_ms=500)
    try:
        t0 = time.monotonic()
        assert box.call("t", "sleep", {"seconds": 1.5}, lambda: False) == {"error": "request timed out"}
        assert time.monotonic() - t0 < 1.5
        box.configs["t"].timeout_ms = 5000
        assert box.call("t", "echo", {"message": "x"}, lambda: False) == {"plain_text_response": "echo: x"}
    finally:
        box.close()


def test_mcp_close_cancels_a_call_and_kills_grandchildren():
    import threading

    box = servers("--grandchild")
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(box.call("t", "sleep", {"seconds": 20}, lambda: False)))
    worker.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    box.close()
    worker.join(5)
    assert time.monotonic() - t0 < 3 and answer["error"] in ("cancelled", "transport closed")


def test_mcp_a_server_that_cannot_start():
    box = McpServers([ServerConfig("bad", "this_executable_does_not_exist_12345")])
    box.warmup()
    assert box.tools == []
    assert box.call("bad", "x", {}, lambda: False) == {"error": "MCP server unavailable: bad"}
    box.close()
