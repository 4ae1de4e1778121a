"""`llamacpy server -m M`: llama-server's HTTP API, OpenAI-compatible, with continuous batching."""

from __future__ import annotations

import argparse

from ..sampling import SamplingParams
from .options import add_model, add_runtime, add_sampling, sampling_kwargs


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..server.settings import ServerSettings

    add_model(p)
    add_runtime(p)
    ServerSettings.add_arguments(p)
    add_sampling(p)


def run(a: argparse.Namespace) -> int:
    from ..server import ServerSettings, serve

    return serve(ServerSettings.from_args(a, SamplingParams(**sampling_kwargs(a))))
