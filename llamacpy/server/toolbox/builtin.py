"""llama-server's built-in tools for agents (`--tools`): read_file, file_glob_search, grep_search,
exec_shell_command, write_file, edit_file, get_info; their definitions, limits and answers as llama.cpp 0c1e570's
server-tools.cpp.

Each tool takes the call's params (with `cwd` and `runtime` set by the route from the request's headers, never by
the model) and returns a JSON object: `plain_text_response` for the model, or `error`. exec_shell_command can
stream its output. One deliberate difference: grep_search skips binary files (a NUL byte in the first 8 KiB),
as grep does, instead of matching lines of object files.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .edit import EditError, apply_edits
from .runtime import Kind, make_runtime

READ_MAX = 16 << 10  # bytes of text read_file returns
READ_MAX_BASE64 = 32 << 20  # bytes read_file returns as base64 (x-resp-type: base64)
SEARCH_MAX_RESULTS = 100
GREP_MAX_RESULTS = 100
EXEC_MAX_OUTPUT = 16 << 10
EXEC_MAX_TIMEOUT = 60  # seconds
INFO_TIMEOUT = 5


class ParamError(ValueError):
    """A required parameter missing or of the wrong type: the request is bad (400)."""


@dataclass
class Tool:
    name: str
    display_name: str
    description: str
    properties: dict
    required: tuple[str, ...]
    invoke: Callable[[dict, Callable[[str], bool] | None], dict]
    write: bool = False
    stream: bool = False
    uses_cwd: bool = True
    kind: str = "server"
    schema: dict | None = None  # the whole parameters schema, as given (an MCP tool's inputSchema)

    def definition(self) -> dict:
        params: dict[str, Any] = {"type": "object", "properties": self.properties}
        if self.required:
            params["required"] = list(self.required)
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.schema if self.schema is not None else params}}

    def to_json(self) -> dict:
        return {"display_name": self.display_name, "tool": self.name, "type": self.kind,
                "permissions": {"write": self.write}, "uses_cwd": self.uses_cwd, "definition": self.definition()}


def _prop(kind: str, description: str) -> dict:
    return {"type": kind, "description": description}


def _required(params: dict, key: str, kind: type = str) -> Any:
    if key not in params:
        raise ParamError(f"missing required parameter \"{key}\"")
    value = params[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ParamError(f"parameter \"{key}\" must be a {kind.__name__}")
    return value


def _opt(params: dict, key: str, default: Any) -> Any:
    """As llama.cpp's json_value: the default when missing, null or of another type."""
    value = params.get(key)
    kind = type(default)
    if value is None or not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        return default
    return value


def _runtime(params: dict):
    return make_runtime(_opt(params, "runtime", ""), _opt(params, "cwd", ""))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _lines(text: str) -> list[str]:
    """std::getline's lines: split on '\\n', no empty last line for a trailing newline."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _json_text(text: str) -> str:
    """What goes into JSON: undecodable bytes replaced (llama.cpp's safe_json_to_str)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- globs ----------------------------------------------------------------------------------------------------

def _class(body: str) -> str:
    """A `[...]` class of llama.cpp's glob as a regex: `!` or `^` first negates, `a-c` is a range."""
    negated = body[:1] in ("!", "^")
    if negated:
        body = body[1:]
    parts, i = [], 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            if body[i] <= body[i + 2]:  # a reversed range matches nothing
                parts.append(f"{re.escape(body[i])}-{re.escape(body[i + 2])}")
            i += 3
        else:
            parts.append(re.escape(body[i]))
            i += 1
    if not parts:
        return "(?s:.)" if negated else "(?!)"
    return f"[{'^' if negated else ''}{''.join(parts)}]"


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append("(?s:.)*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = i + 1 + (pattern[i + 1:i + 2] in ("]", "-"))
            while end < len(pattern) and pattern[end] != "]":
                end += 1
            if end < len(pattern):
                out.append(_class(pattern[i + 1:end]))
                i = end + 1
                continue
            out.append(re.escape(c))  # no closing ']': a literal '['
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, s: str) -> bool:
    """llama.cpp's glob: `*` any run of non-'/' characters, `**` anything, `?` one non-'/' character, `[...]` a
    class (compiled to a regex here rather than matched by recursion)."""
    return _glob_regex(pattern).match(s) is not None


def path_glob_match(pattern: str, rel: str) -> bool:
    """No '/' in the pattern: match the basename at any depth; else the whole relative path, anchored with
    `**/` unless it already is."""
    if "/" not in pattern:
        return glob_match(pattern, rel.rsplit("/", 1)[-1])
    if pattern == "**" or pattern.startswith(("**/", "/")):
        return glob_match(pattern, rel)
    return glob_match("**/" + pattern, rel)


# -- the tools ------------------------------------------------------------------------------------------------

def read_file(params: dict, _stream=None) -> dict:
    path = _required(params, "path")
    start, end = _opt(params, "start_line", 1), _opt(params, "end_line", -1)
    append_loc = _opt(params, "append_loc", False)
    rt = _runtime(params)
    size = rt.file_size(path)
    if size is None:
        return {"error": f"cannot stat file: {path}"}
    if _opt(params, "resp_type", "") == "base64":  # the x-resp-type header, never the model
        if size > READ_MAX_BASE64:
            return {"error": f"file too large ({size} bytes, max {READ_MAX_BASE64})"}
        data = rt.read(path)
        if data is None:
            return {"error": f"failed to open file: {path}"}
        return {"base64": base64.b64encode(data).decode(), "size_bytes": len(data)}
    if size > READ_MAX and end == -1:
        return {"error": f"file too large ({size} bytes, max {READ_MAX}). Use start_line/end_line to read a "
                         "portion."}
    data = rt.read(path)
    if data is None:
        return {"error": f"failed to open file: {path}"}
    out, n_bytes = [], 0
    for lineno, line in enumerate(_lines(_text(data)), 1):
        if lineno < start:
            continue
        if end != -1 and lineno > end:
            break
        piece = f"{lineno}\u2192{line}\n" if append_loc else f"{line}\n"
        size_piece = len(piece.encode("utf-8", "surrogateescape"))
        if n_bytes + size_piece > READ_MAX:
            out.append("[output truncated]")
            break
        out.append(piece)
        n_bytes += size_piece
    return {"plain_text_response": _json_text("".join(out))}


def file_glob_search(params: dict, _stream=None) -> dict:
    rt = _runtime(params)
    path = _required(params, "path")
    base = rt.resolve(path)
    include, exclude = _opt(params, "include", "**"), _opt(params, "exclude", "")
    kind_name = _opt(params, "type", "file")
    max_depth = max(0, _opt(params, "max_depth", 0))
    limit = _opt(params, "limit", SEARCH_MAX_RESULTS)
    if limit < 1:
        return {"error": f"invalid limit: {limit} (expected 1 or more)"}
    limit = min(limit, SEARCH_MAX_RESULTS)
    try:
        kind = Kind(kind_name)
    except ValueError:
        return {"error": f'invalid type: {kind_name} (expected "file", "dir" or "all")'}
    listing = rt.list_entries(base, max_depth, kind)
    if listing.err:
        return {"error": f"{listing.err}: {path}"}
    matches = [e for e in listing.entries
               if path_glob_match(include, e.rel) and not (exclude and path_glob_match(exclude, e.rel))]
    shown = matches[:limit]
    text = "".join(f"{e.rel}{'/' if e.is_dir else ''}\n" for e in shown)
    text += f"\n---\nTotal matches: {len(matches)}\n"
    if len(matches) > len(shown):
        text += (f"[{len(shown)} results limit reached ({len(matches)} total matches). Refine the glob pattern "
                 "to narrow the search.]\n")
    if listing.truncated:
        text += "[results truncated: time budget or unreadable directory]\n"
    # `base` is absolute, so a client (the web UI's picker) can join the relative entries
    entries = [{"path": e.rel, "type": "dir" if e.is_dir else "file"} for e in shown]
    return {"plain_text_response": text, "entries": entries, "base": base}


def _grep_pattern(params: dict) -> re.Pattern | str:
    source = _required(params, "pattern")
    if _opt(params, "literal", False):
        source = re.escape(source)
    try:
        return re.compile(source, re.IGNORECASE if _opt(params, "ignore_case", False) else 0)
    except re.error as e:
        return f"invalid regex: {e}"


def grep_search(params: dict, _stream=None) -> dict:
    path = _required(params, "path")
    pattern = _grep_pattern(params)
    if isinstance(pattern, str):
        return {"error": pattern}
    include, exclude = _opt(params, "include", "**"), _opt(params, "exclude", "")
    ctx = max(0, _opt(params, "context_lines", 0))
    show_num = _opt(params, "return_line_numbers", False) or ctx > 0
    rt = _runtime(params)
    abs_path = rt.resolve(path)
    if rt.is_file(abs_path):
        files = [(abs_path, path)]
    elif rt.is_dir(abs_path):
        listing = rt.list_entries(abs_path, 0, Kind.FILES)
        if listing.err:
            return {"error": f"{listing.err}: {path}"}
        files = [(f"{abs_path.rstrip('/')}/{e.rel}", e.rel) for e in listing.entries
                 if path_glob_match(include, e.rel) and not (exclude and path_glob_match(exclude, e.rel))]
    else:
        return {"error": f"path does not exist: {path}"}
    out, total, limited = [], 0, False
    for full, shown in files:
        if limited:
            break
        data = rt.read(full)
        if data is None or b"\0" in data[:8192]:
            continue
        lines = _lines(_text(data))
        for i, line in enumerate(lines):
            if total >= GREP_MAX_RESULTS:
                limited = True
                break
            if not pattern.search(line):
                continue
            lo, hi = (max(0, i - ctx), min(len(lines) - 1, i + ctx)) if ctx else (i, i)
            for j in range(lo, hi + 1):
                mark = ":" if j == i else "-"
                out.append(f"{shown}{mark}{f'{j + 1}{mark}' if show_num else ''}{lines[j]}\n")
            if ctx:
                out.append("--\n")
            total += 1
    out.append(f"\n---\nTotal matches: {total}\n")
    if limited:
        out.append(f"[{GREP_MAX_RESULTS} matches limit reached. Narrow the path/pattern/include to see more.]\n")
    return {"plain_text_response": _json_text("".join(out))}


def exec_shell_command(params: dict, stream: Callable[[str], bool] | None = None) -> dict:
    command = _required(params, "command")
    timeout = min(_opt(params, "timeout", 10), EXEC_MAX_TIMEOUT)
    max_output = min(_opt(params, "max_output_size", EXEC_MAX_OUTPUT), EXEC_MAX_OUTPUT)
    rt = _runtime(params)
    res = rt.run(["sh", "-c", command], max_output, timeout, stream)
    tail = f"\n[exit code: {res.exit_code}]" + (" [exit due to timed out]" if res.timed_out else "")
    if stream is not None:
        stream(tail)
        return {}
    return {"plain_text_response": _json_text(res.output + tail)}


def write_file(params: dict, _stream=None) -> dict:
    path, content = _required(params, "path"), _required(params, "content")
    data = content.encode("utf-8", "surrogatepass")
    if not _runtime(params).write(path, data):
        return {"error": f"failed to write file: {path}"}
    return {"result": "file written successfully", "path": path, "bytes": len(data)}


def edit_file(params: dict, _stream=None) -> dict:
    path = _required(params, "path")
    edits_json = _required(params, "edits", list)
    if not edits_json:
        return {"error": '"edits" must be a non-empty array'}
    edits = []
    for i, e in enumerate(edits_json):
        if not isinstance(e, dict):
            raise ParamError(f"edits[{i}] must be an object")
        old, new = _required(e, "old_text"), _required(e, "new_text")
        if not old:
            return {"error": f"edits[{i}].old_text must not be empty"}
        edits.append((old, new))
    rt = _runtime(params)
    data = rt.read(path)
    if data is None:
        return {"error": f"failed to open file: {path}"}
    original = _text(data)
    try:
        content = apply_edits(original, path, edits)
    except EditError as e:
        return {"error": str(e)}
    if content == original:
        return {"error": "no changes made: the replacement(s) produced identical content"}
    if not rt.write(path, content.encode("utf-8", "surrogateescape")):
        return {"error": f"failed to write file: {path}"}
    return {"result": "file edited successfully", "path": path, "edits_applied": len(edits)}


def get_info(params: dict, _stream=None) -> dict:
    rt = _runtime(params)
    res = rt.run(["uname", "-a"], 4096, INFO_TIMEOUT)
    os_info = res.output.strip() if res.exit_code == 0 and not res.timed_out else "unknown"
    cwd = _opt(params, "cwd", "")
    if not cwd:
        if not _opt(params, "runtime", ""):
            cwd = os.getcwd()
        else:
            pwd = rt.run(["pwd"], 4096, INFO_TIMEOUT)
            cwd = pwd.output.strip() if pwd.exit_code == 0 and not pwd.timed_out else "unknown"
    return {"os": os_info, "cwd": cwd}


_S, _I, _B = "string", "integer", "boolean"
BUILTIN = [
    Tool("read_file", "Read file",
         "Read the contents of a file. Optionally specify a 1-based line range. If append_loc is true, each line "
         "is prefixed with its line number (e.g. \"1\u2192...\").",
         {"path": _prop(_S, "Path to the file"),
          "start_line": _prop(_I, "First line to read, 1-based (default: 1)"),
          "end_line": _prop(_I, "Last line to read, 1-based inclusive (default: end of file)"),
          "append_loc": _prop(_B, "Prefix each line with its line number")},
         ("path",), read_file),
    Tool("file_glob_search", "File search",
         "Recursively search for files matching a glob pattern under a directory. Automatically skips files "
         "ignored by .gitignore (when the directory is inside a git repo) and common junk directories (.git, "
         "node_modules, build, dist, etc.) otherwise. A pattern with no '/' (e.g. \"*.cpp\") matches the file's "
         "basename at any depth. A pattern containing '/' matches the full relative path; unless already anchored "
         "with \"**/\" or a leading '/', it is automatically prefixed with \"**/\". Use type=\"dir\" or \"all\" to "
         "also list directories; directory entries are suffixed with '/' in the output. Note: directory listings "
         "do not apply .gitignore filtering.",
         {"path": _prop(_S, "Base directory to search in"),
          "include": _prop(_S, "Glob pattern for files to include (e.g. \"*.cpp\" or \"src/**/*.cpp\"). "
                               "Default: **"),
          "exclude": _prop(_S, "Glob pattern for files to exclude"),
          "type": _prop(_S, "Entry type to return: \"file\" (default), \"dir\" or \"all\""),
          "max_depth": _prop(_I, "Maximum depth to descend into subdirectories (default: 0 = unlimited; 1 = "
                                 "direct children only)"),
          "limit": _prop(_I, f"Maximum number of results to return, capped at {SEARCH_MAX_RESULTS} (default "
                             f"{SEARCH_MAX_RESULTS})")},
         ("path",), file_glob_search),
    Tool("grep_search", "Grep search",
         "Search for a pattern in files under a path. Returns matching lines with file paths (and, unless "
         "searching a single file, paths relative to the given directory). Automatically skips files ignored by "
         ".gitignore (when the directory is inside a git repo) and common junk directories (.git, node_modules, "
         "build, dist, etc.) otherwise. include/exclude: a pattern with no '/' matches the basename at any depth; "
         "a pattern containing '/' matches the full relative path (auto-anchored with \"**/\" unless already "
         "anchored).",
         {"path": _prop(_S, "File or directory to search in"),
          "pattern": _prop(_S, "Pattern to search for (regular expression unless literal is true)"),
          "include": _prop(_S, "Glob pattern to filter files (default: **)"),
          "exclude": _prop(_S, "Glob pattern to exclude files"),
          "return_line_numbers": _prop(_B, "If true, include line numbers in results"),
          "literal": _prop(_B, "Treat pattern as a literal string instead of a regular expression (default: "
                               "false)"),
          "ignore_case": _prop(_B, "Case-insensitive search (default: false)"),
          "context_lines": _prop(_I, "Number of lines of context to show before and after each match (default: "
                                     "0)")},
         ("path", "pattern"), grep_search),
    Tool("exec_shell_command", "Execute shell command",
         "Execute a shell command and return its output (stdout and stderr combined).",
         {"command": _prop(_S, "Shell command to execute"),
          "timeout": _prop(_I, f"Timeout in seconds (default 10, max {EXEC_MAX_TIMEOUT})"),
          "max_output_size": _prop(_I, f"Maximum output size in bytes (default {EXEC_MAX_OUTPUT})")},
         ("command",), exec_shell_command, write=True, stream=True),
    Tool("write_file", "Write file",
         "Write content to a file, creating it (including parent directories) if it does not exist. May use with "
         "edit_file for more complex edits.",
         {"path": _prop(_S, "Path of the file to write"), "content": _prop(_S, "Content to write")},
         ("path", "content"), write_file, write=True),
    Tool("edit_file", "Edit file",
         "Edit a file using exact text replacement. Each edits[].old_text must be unique in the file and is "
         "matched against the original content, not incrementally. Merge nearby changes into one edit instead of "
         "overlapping edits. Use write_file to replace the whole file.",
         {"path": _prop(_S, "Path to the file to edit"),
          "edits": {"type": "array", "description": "One or more exact text replacements to apply", "items": {
              "type": "object",
              "properties": {
                  "old_text": _prop(_S, "Exact text to find; must be unique in the file and must not overlap with "
                                        "other edits"),
                  "new_text": _prop(_S, "Text to replace old_text with")},
              "required": ["old_text", "new_text"]}}},
         ("path", "edits"), edit_file, write=True),
    Tool("get_info", "Get Runtime Info",
         "Returns runtime info: the OS name/version and the current working directory", {}, (), get_info),
]
