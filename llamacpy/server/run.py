"""Running the server: uvicorn in the main thread, the engine in its own, and a clean shutdown.

On SIGINT/SIGTERM the engine ends every request first (streams get a final error frame and close), then
uvicorn closes the connections; the process exits within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from .app import create_app
from .context import ServerContext
from .settings import ServerSettings

log = logging.getLogger("llamacpy.server")
GRACEFUL_SECONDS = 3  # after the engine has stopped, the longest wait for connections to finish


class GracefulServer(uvicorn.Server):
    """uvicorn, ended by SIGINT/SIGTERM without re-raising them; with `exit_on_stdin_eof` also when standard
    input closes (a router's child: it ends with its router, even one killed without a word)."""

    exit_code = 0

    def address(self) -> str:
        """http://host:port actually listened on (the real port when --port 0)."""
        return self.addresses()[0]

    def addresses(self) -> list[str]:
        """Every http://host:port listened on (--host A,B listens on each)."""
        out = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        return out

    def watch_stdin(self) -> None:
        def wait_for_eof() -> None:
            for line in sys.stdin:
                if line.strip() == "exit":
                    break
            log.info("standard input closed (the router stops this server, or is gone): shutting down")
            self.handle_exit(signal.SIGTERM, None)

        threading.Thread(target=wait_for_eof, name="stdin-watch", daemon=True).start()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM start the graceful shutdown (a second SIGINT forces it); the process then exits
        normally instead of re-raising the signal as uvicorn does."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Server(GracefulServer):
    def __init__(self, config: uvicorn.Config, ctx: ServerContext):
        super().__init__(config)
        self.ctx = ctx

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.should_exit:  # could not bind
            return
        for address in self.addresses():
            log.info("listening on %s%s", address, " (API key required)" if self.ctx.api_keys else "")
        asyncio.get_running_loop().create_task(self._watch_loading())
        self.ctx.streams.start()

    async def _watch_loading(self) -> None:
        ctx, t0 = self.ctx, time.perf_counter()
        if not await asyncio.to_thread(ctx.engine.wait_ready):
            log.error("could not load the model: %s", ctx.engine.error)
            self.exit_code, self.should_exit = 1, True
            return
        f, s = ctx.model_facts, ctx.settings
        if s.embedding:  # no cache kept: any input may use the whole context
            serving = f"embeddings ({ctx.pooling} pooling), inputs of up to {ctx.n_ctx} tokens"
        else:
            serving = (f"context {ctx.n_ctx} tokens shared by {s.n_slots} slots (unified KV cache)" if s.unified_kv
                       else f"context {ctx.n_ctx} tokens = {s.n_slots} slots x {ctx.n_ctx_slot}")
            serving += f", KV cache {'/'.join(t.name for t in s.cache_types)}"
        if ctx.draft_path is not None:
            d = s.draft
            serving += (f"; speculative decoding with {ctx.draft_path.name} (context {ctx.engine.config.draft.n_ctx_slot}"
                        f" per slot, draft-max {d.n_max}, draft-min {d.n_min}, draft-p-min {d.p_min})")
        log.info("model %s ready in %.1f s: %s, %.0fM parameters, %d MiB; %s", ctx.path.name,
                 time.perf_counter() - t0, f["arch"], f["n_params"] / 1e6, f["size"] >> 20, serving)

    async def shutdown(self, sockets=None) -> None:
        log.info("shutting down: ending %d request(s)", sum(1 for i in self.ctx.engine.slots() if i.request))
        await asyncio.to_thread(self.ctx.toolbox.close)  # tool calls in flight end now
        await asyncio.to_thread(self.ctx.engine.stop)
        await self.ctx.streams.shutdown()  # resumable streams record the engine's shutdown error, then end
        await super().shutdown(sockets)


def configure_logging(level: int = logging.INFO) -> None:
    logger = logging.getLogger("llamacpy")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


def _ssl(settings: ServerSettings) -> dict:
    """--ssl-key-file / --ssl-cert-file: HTTPS (both or neither, as llama-server)."""
    if bool(settings.ssl_key_file) != bool(settings.ssl_cert_file):
        raise ValueError("--ssl-key-file and --ssl-cert-file go together")
    if not settings.ssl_key_file:
        return {}
    for path in (settings.ssl_key_file, settings.ssl_cert_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"SSL file not found: {path}")
    return {"ssl_keyfile": settings.ssl_key_file, "ssl_certfile": settings.ssl_cert_file}


def _bind_all(hosts: str, port: int) -> list[socket.socket] | None:
    """--host A,B (llama-server's list of addresses): one listening socket each, on one port (the first's when
    --port 0). None for one address: uvicorn binds it."""
    names = [h.strip().strip("[]") for h in hosts.split(",") if h.strip()]
    if len(names) < 2:
        return None
    out = []
    for host in names:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        port = sock.getsockname()[1]
        out.append(sock)
    return out


def serve(settings: ServerSettings) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    configure_logging(settings.log_level)
    ctx = ServerContext(settings)
    log.info("llamacpy server: model %s, context %s, %d slots, %s threads", settings.model,
             settings.ctx_size or "from the model", settings.n_slots, settings.threads or "default")
    config = uvicorn.Config(create_app(ctx), host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="off", timeout_keep_alive=settings.timeout,
                            timeout_graceful_shutdown=GRACEFUL_SECONDS, **_ssl(settings))
    server = _Server(config, ctx)
    if settings.router_secret is not None:
        server.watch_stdin()
    sockets = _bind_all(settings.host, settings.port)
    ctx.engine.start()
    server.run(sockets=sockets)
    ctx.engine.stop()
    return server.exit_code or (0 if server.started else 1)
