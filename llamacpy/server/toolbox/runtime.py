"""Where a built-in tool runs: on this host, in a container (`docker-container:<id>`, `podman-container:<id>`) or on
a host reached over ssh (`ssh:<target>`), as llama-server's tools_io; and the subprocess runner they share.

A runtime resolves paths against its working directory (the request's `x-tool-cwd`), reads, writes and lists
files, and runs commands. The container and ssh runtimes do each of these as a POSIX command inside the isolate
(sh, cat, wc, mkdir, dirname, find, timeout), exactly as llama-server does.

Unlike llama-server, a command that times out (or whose client went away) is killed with its whole process group,
so nothing it spawned keeps running or keeps the output pipe open.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

GIT_LS_FILES_MAX_OUTPUT = 8 << 20  # bytes
LIST_TIMEOUT = 15  # seconds, one listing (git or the walker)
ISOLATE_EXEC_TIMEOUT = 15  # seconds, the helper commands of an isolate (stat, mkdir, find, cat)
ISOLATE_READ_MAX = 64 << 20  # bytes, the largest file an isolate reads
# directories a listing reports but never descends into (they can be enormous)
JUNK_DIRS = (".git", ".svn", ".hg", "node_modules", "__pycache__", ".venv", "venv", "dist", "build", "target",
             ".cache", ".idea", ".vscode")
ENGINES = ("docker", "podman")


class RuntimeSpecError(RuntimeError):
    """A runtime the request (x-tool-runtime) or --tools-runtime names that cannot be used."""


class Kind(Enum):
    FILES = "file"
    DIRS = "dir"
    ALL = "all"


@dataclass
class ExecResult:
    output: str
    exit_code: int = -1
    timed_out: bool = False


@dataclass
class Entry:
    rel: str  # '/'-separated, relative to the listed directory
    is_dir: bool = False


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    err: str = ""  # set when the base is not a directory
    truncated: bool = False  # the walk could not see everything (time budget, unreadable directory)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_process(args: list[str], max_output: int, timeout: float, on_chunk: Callable[[str], bool] | None = None,
                combine_stderr: bool = True, cwd: str = "", stdin: bytes | None = None) -> ExecResult:
    """Run `args`, collecting at most `max_output` bytes of its output (the rest is drained and dropped).
    `on_chunk` gets the output as it comes; returning False stops the process (the client went away)."""
    try:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if combine_stderr else subprocess.DEVNULL,
                                cwd=cwd or None, start_new_session=True)
    except OSError:
        return ExecResult("failed to spawn process")

    def feed() -> None:  # in a thread: the child drains stdin while we read its output
        with contextlib.suppress(OSError):
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    deadline = time.monotonic() + timeout
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out, truncated, timed_out, stopped = bytearray(), False, False, False
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if not ready:
                if proc.poll() is not None:  # exited; whatever it left running may hold the pipe
                    break
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            if truncated:
                continue
            room = max_output - len(out)
            if len(chunk) > room:
                chunk, truncated = chunk[:room], True
            out += chunk
            if on_chunk is not None and chunk and not on_chunk(decoder.decode(chunk)):
                stopped = True
                break
    finally:
        if timed_out or stopped:
            _kill(proc)
        proc.stdout.close()
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(proc)
            code = proc.wait()
        writer.join(timeout=1)
    text = out.decode("utf-8", "replace") + ("\n[output truncated]" if truncated else "")
    return ExecResult(text, code, timed_out)


def _depth(rel: str) -> int:
    return 1 + rel.count("/")


def _lines(text: str, strip_dot_slash: bool = False) -> list[str]:
    out = []
    for line in text.split("\n"):
        line = line.rstrip("\r").replace("\\", "/")
        if strip_dot_slash and line.startswith("./"):
            line = line[2:]
        if line:
            out.append(line)
    return out


class HostRuntime:
    """The tools on this machine; `cwd` (if set) resolves relative paths and is where commands run."""

    def __init__(self, cwd: str = ""):
        self.cwd = cwd

    def resolve(self, path: str) -> str:
        """`~` expanded, then made absolute against cwd (or the server's); '.' and '..' dropped."""
        if path == "~" or path.startswith(("~/", "~\\")):
            path = os.path.expanduser(path)
        full = os.path.join(self.cwd or os.getcwd(), path)
        return os.path.normpath(full)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self.resolve(path))

    def is_file(self, path: str) -> bool:
        return os.path.isfile(self.resolve(path))

    def file_size(self, path: str) -> int | None:
        try:
            return os.path.getsize(self.resolve(path))
        except OSError:
            return None

    def read(self, path: str) -> bytes | None:
        try:
            with open(self.resolve(path), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, path: str, data: bytes) -> bool:
        full = self.resolve(path)
        try:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        except OSError:
            return False
        return True

    def run(self, args: list[str], max_output: int, timeout: float,
            on_chunk: Callable[[str], bool] | None = None) -> ExecResult:
        return run_process(args, max_output, timeout, on_chunk, cwd=self.cwd)

    def list_entries(self, base: str, max_depth: int, kind: Kind) -> Listing:
        """Entries under `base` (absolute): max_depth 0 = unlimited, 1 = its children. Files come from
        `git ls-files` inside a repository (so .gitignore applies), else from a walk skipping JUNK_DIRS."""
        if not os.path.isdir(base):
            return Listing(err="path does not exist or is not a directory")
        deadline = time.monotonic() + LIST_TIMEOUT
        if kind is Kind.FILES:
            res = self.run(["git", "-C", base, "ls-files", "--cached", "--others", "--exclude-standard"],
                           GIT_LS_FILES_MAX_OUTPUT, LIST_TIMEOUT)
            if res.exit_code == 0 and not res.timed_out:
                rels = [r for r in _lines(res.output) if not max_depth or _depth(r) <= max_depth]
                return Listing([Entry(r) for r in rels if os.path.isfile(os.path.join(base, r))])
        return self._walk(base, max_depth, kind, deadline)

    @staticmethod
    def _walk(base: str, max_depth: int, kind: Kind, deadline: float) -> Listing:
        out = Listing()
        stack = [(base, "", 0)]
        while stack:
            folder, rel_dir, depth = stack.pop()
            try:
                with os.scandir(folder) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError:
                out.truncated = True
                continue
            for entry in items:
                if time.monotonic() >= deadline:
                    out.truncated = True
                    return out
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    is_dir = entry.is_dir()
                    is_file = not is_dir and entry.is_file()
                    is_link = entry.is_symlink()
                except OSError:
                    continue
                if is_dir:
                    if kind is not Kind.FILES:
                        out.entries.append(Entry(rel, True))
                    # junk directories stay selectable but are never walked; links can loop
                    if entry.name not in JUNK_DIRS and not is_link and (not max_depth or depth + 1 < max_depth):
                        stack.append((entry.path, rel, depth + 1))
                elif is_file and kind is not Kind.DIRS:
                    out.entries.append(Entry(rel))
        return out


def _quote_join(argv: list[str]) -> str:
    """One string a POSIX shell splits back into exactly `argv` (ssh re-parses its command line)."""
    return " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)


class IsolateRuntime(HostRuntime):
    """Every operation as a command inside an isolate that provides a POSIX environment. Paths are POSIX."""

    def build_argv(self, inner: list[str], needs_stdin: bool) -> list[str]:
        raise NotImplementedError

    def resolve(self, path: str) -> str:
        if not self.cwd or path.startswith("/"):
            return path
        return f"{self.cwd}/{path}"

    def _exec(self, inner: list[str], max_output: int, combine_stderr: bool = True) -> ExecResult:
        return run_process(self.build_argv(inner, False), max_output, ISOLATE_EXEC_TIMEOUT,
                           combine_stderr=combine_stderr)

    def _test(self, flag: str, path: str) -> bool:
        res = self._exec(["sh", "-c", f'[ {flag} "$1" ]', "_", path], 4096)
        return res.exit_code == 0 and not res.timed_out

    def is_dir(self, path: str) -> bool:
        return self._test("-d", self.resolve(path))

    def is_file(self, path: str) -> bool:
        return self._test("-f", self.resolve(path))

    def file_size(self, path: str) -> int | None:
        res = self._exec(["sh", "-c", 'wc -c < "$1"', "_", self.resolve(path)], 64)
        try:
            return int(res.output.strip()) if res.exit_code == 0 and not res.timed_out else None
        except ValueError:
            return None

    def read(self, path: str) -> bytes | None:
        # stderr must not be spliced into the file's bytes
        res = self._exec(["cat", "--", self.resolve(path)], ISOLATE_READ_MAX, combine_stderr=False)
        return res.output.encode() if res.exit_code == 0 and not res.timed_out else None

    def write(self, path: str, data: bytes) -> bool:
        # the content travels on stdin: no argv for the far side to re-parse, no temporary file
        argv = self.build_argv(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "_", self.resolve(path)],
                               True)
        res = run_process(argv, 4096, ISOLATE_EXEC_TIMEOUT, stdin=data)
        return res.exit_code == 0 and not res.timed_out

    def run(self, args: list[str], max_output: int, timeout: float,
            on_chunk: Callable[[str], bool] | None = None) -> ExecResult:
        # an in-isolate `timeout`: killing the client here does not kill what runs over there
        inner = ["timeout", f"{int(timeout)}s", *args]
        if self.cwd:  # 127: what a shell reports for a command it could not run
            inner = ["sh", "-c", 'cd "$1" || exit 127; shift; exec "$@"', "_", self.cwd, *inner]
        return run_process(self.build_argv(inner, True), max_output, timeout + 5, on_chunk)

    def list_entries(self, base: str, max_depth: int, kind: Kind) -> Listing:
        abs_base = self.resolve(base)
        if not self.is_dir(base):
            return Listing(err="path does not exist or is not a directory")
        if kind is Kind.FILES:
            res = self._exec(["sh", "-c", 'cd "$1" && git ls-files --cached --others --exclude-standard', "_",
                              abs_base], GIT_LS_FILES_MAX_OUTPUT)
            if res.exit_code == 0 and not res.timed_out:
                return Listing([Entry(r) for r in _lines(res.output) if not max_depth or _depth(r) <= max_depth])
        out = Listing()
        for is_dir in (True, False):
            if (is_dir and kind is Kind.FILES) or (not is_dir and kind is Kind.DIRS):
                continue
            out.entries += [Entry(r, is_dir) for r in self._find(abs_base, max_depth, is_dir, out)]
        return out

    def _find(self, abs_base: str, max_depth: int, dirs: bool, out: Listing) -> list[str]:
        """One `find` pass (busybox's as well as GNU's); junk directories listed but not descended into."""
        prune = " -o ".join(f"-name {n}" for n in JUNK_DIRS)
        cmd = 'cd "$1" && find . -mindepth 1' + (f" -maxdepth {max_depth}" if max_depth else "")
        cmd += f" \\( {prune} \\) -prune" + (" -print -o -type d -print" if dirs else " -o -type f -print")
        res = self._exec(["sh", "-c", cmd, "_", abs_base], GIT_LS_FILES_MAX_OUTPUT)
        out.truncated = out.truncated or res.timed_out
        return _lines(res.output, strip_dot_slash=True)


class ContainerRuntime(IsolateRuntime):
    """A running container, through `<engine> exec` (docker and podman take the same verbs)."""

    def __init__(self, engine: str, container_id: str, cwd: str = ""):
        super().__init__(cwd)
        self.engine, self.container_id = engine, container_id

    def build_argv(self, inner: list[str], needs_stdin: bool) -> list[str]:
        return [self.engine, "exec", *(["-i"] if needs_stdin else []), self.container_id, *inner]


class SshRuntime(IsolateRuntime):
    """A remote host over ssh: remoting, not isolation. Key-based auth and a trusted host key only (no prompt
    could be answered here)."""

    OPTIONS = ("-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
               "-o", "StrictHostKeyChecking=yes")

    def __init__(self, target: str, cwd: str = ""):
        super().__init__(cwd)
        self.target = target

    def build_argv(self, inner: list[str], needs_stdin: bool) -> list[str]:
        return ["ssh", *self.OPTIONS, *([] if needs_stdin else ["-n"]), self.target, _quote_join(inner)]


def _valid_ssh_target(target: str) -> bool:
    # ssh reads options from its argv: a target starting with '-' (-oProxyCommand=...) would be one
    return bool(target) and target[0] != "-" and all(c.isalnum() or c in ".-_@" for c in target)


def _valid_container_id(cid: str) -> bool:
    # the id lands on the `<engine> exec` command line: one starting with '-' (--privileged) would be an option
    return bool(cid) and cid[0].isalnum() and all(c.isalnum() or c in ".-_" for c in cid)


def parse_container(spec: str) -> tuple[str, str, bool] | None:
    """`<engine>-container:<id>` (attach: True) or `<engine>:<image>` (spawn) -> (engine, id or image, attach)."""
    for engine in ENGINES:
        if spec.startswith(f"{engine}-container:"):
            return engine, spec[len(engine) + 11:], True
        if spec.startswith(f"{engine}:"):
            return engine, spec[len(engine) + 1:], False
    return None


def make_runtime(spec: str, cwd: str = "") -> HostRuntime:
    """The runtime a tool call runs in: `spec` empty is this host. Never falls back to the host when an isolate
    was asked for."""
    if not spec:
        return HostRuntime(cwd)
    container = parse_container(spec)
    if container is not None:
        engine, cid, attach = container
        if not attach:  # spawning belongs to --tools-runtime, a call only attaches
            raise RuntimeSpecError(f"tool runtime must name a running container: {spec}")
        if not _valid_container_id(cid):
            raise RuntimeSpecError(f"invalid container id: {cid}")
        return ContainerRuntime(engine, cid, cwd)
    if spec.startswith("ssh:"):
        target = spec[4:]
        if not _valid_ssh_target(target):
            raise RuntimeSpecError(f"invalid ssh target: {target}")
        return SshRuntime(target, cwd)
    raise RuntimeSpecError(f"unknown tool runtime: {spec}")


class OwnedContainer:
    """--tools-runtime `<engine>:<image>`: a container spawned here (`<engine> run --rm -i <image> sh`, kept alive
    by its open stdin), respawned if it dies, stopped (and so removed) when the server exits."""

    def __init__(self, engine: str, image: str):
        if not image:
            raise RuntimeSpecError(f"--tools-runtime {engine}:<image> requires an image name")
        self.engine, self.image = engine, image
        self.proc: subprocess.Popen | None = None
        self.container_id = ""
        self.lock = threading.Lock()
        self._spawn()

    def _spawn(self) -> None:
        cidfile = os.path.join(tempfile.gettempdir(), f"llamacpy-tools-runtime-{os.getpid()}-{id(self)}.cid")
        with contextlib.suppress(OSError):
            os.remove(cidfile)
        try:
            self.proc = subprocess.Popen([self.engine, "run", "--rm", "-i", "--cidfile", cidfile, self.image, "sh"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as e:
            raise RuntimeSpecError(f"failed to spawn {self.engine} container for tools runtime (image: "
                                   f"{self.image}): {e}") from None
        for _ in range(100):
            with contextlib.suppress(OSError), open(cidfile) as f:
                self.container_id = f.readline().strip()
            if self.container_id:
                break
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            os.remove(cidfile)
        if not self.container_id:
            self.proc.kill()
            raise RuntimeSpecError(f"timed out waiting for {self.engine} container to start (image: {self.image})")

    def spec(self) -> str:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._spawn()
            return f"{self.engine}-container:{self.container_id}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the container's shell (its pid 1) exits; --rm removes it
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class FixedRuntime:
    """--tools-runtime naming an isolate that exists already: nothing to own."""

    def __init__(self, spec: str):
        make_runtime(spec)  # reject a bad spec at start
        self._spec = spec

    def spec(self) -> str:
        return self._spec

    def close(self) -> None:
        pass


def tools_runtime(spec: str) -> FixedRuntime | OwnedContainer:
    """--tools-runtime: `<engine>:<image>` spawns and owns a container; anything else names an existing one."""
    container = parse_container(spec)
    if container is not None and not container[2]:
        return OwnedContainer(container[0], container[1])
    return FixedRuntime(spec)
