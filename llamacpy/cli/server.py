"""`llamacpy server -m M`: llama-server's HTTP API, OpenAI-compatible, with continuous batching.

Its command line is llama-server's (llama_server_compat.py): every llama-server flag and LLAMA_ARG_* variable."""

from __future__ import annotations

import argparse
import logging

from ..sampling import SamplingParams
from .llama_server_compat import add_flags, check, env_defaults
from .options import add_draft, add_model, add_runtime, add_sampling, sampling_kwargs

log = logging.getLogger("llamacpy.server")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..server.settings import ServerSettings

    add_model(p)
    add_runtime(p)
    ServerSettings.add_arguments(p)
    add_draft(p)
    add_sampling(p)
    add_flags(p)
    env_defaults(p)


def run(a: argparse.Namespace) -> int:
    from ..server import ServerSettings, serve
    from ..server.run import configure_logging

    configure_logging()
    for note in check(a):
        log.info("%s", note)
    settings = ServerSettings.from_args(a, SamplingParams(**sampling_kwargs(a)))
    if settings.is_router:
        return _run_router(a, settings)
    return serve(settings)


def _run_router(a: argparse.Namespace, settings) -> int:
    """No single model: the models of --models-dir/--models-preset/--models-catalog, one child server each.
    The flags given here (other than the router's own) are passed on to every child."""
    from ..router import serve_router
    from ..router.sources import FlagTable, discover

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    flags = FlagTable(parser)
    def scan():
        return discover(settings.models_dir, settings.models_preset, settings.models_catalog, flags)

    return serve_router(settings, scan, flags.explicit(a))
