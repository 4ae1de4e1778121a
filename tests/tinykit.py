"""scripts/make_tiny_models.py, importable from the tests (the `tiny_model` fixture of conftest.py uses it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def tiny_maker():
    """scripts/make_tiny_models.py as a module (its SPECS and `make`)."""
    path = Path(__file__).resolve().parents[1] / "scripts/make_tiny_models.py"
    spec = importlib.util.spec_from_file_location("make_tiny_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
