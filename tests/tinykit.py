"""scripts/ as importable modules: make_tiny_models.py (the `tiny_model` fixture of conftest.py uses it) and
export_hf.py (the convert round trips)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def script(name: str):
    """scripts/<name>.py as a module (loaded once)."""
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / f"scripts/{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def tiny_maker():
    """scripts/make_tiny_models.py (its SPECS and `make`)."""
    return script("make_tiny_models")
