"""Shared fixtures: real catalog models (pulled into the cache on first use) and llama.cpp's test data."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tinykit import tiny_maker

from llamacpy.catalog import cache_dir, catalog, extract_hf_folder, pull

SDIST = "llama-cpp-python==0.3.36"


def _model(name: str) -> Path:
    return pull(name)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return _model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def qwen05_path() -> Path:
    return _model("qwen2.5-coder-0.5b-instruct")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return _model("gemma-3-270m")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smollm2_path):
    """name -> the path of that tiny random-weight model of scripts/make_tiny_models.py (made once)."""
    out, maker, made = tmp_path_factory.mktemp("tiny"), tiny_maker(), {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = maker.make(name, out, smollm2_path)
        return made[name]

    return get


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (BERT, embeddings), converted to GGUF f16 by `pull`."""
    return _model("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def minilm_hf(minilm_path) -> Path:
    """The Hugging Face folder all-minilm-l6-v2 is converted from (config, safetensors, tokenizer.json),
    extracted from the catalog's wheel (already downloaded by the pull)."""
    m = catalog()["all-minilm-l6-v2"]
    folder = cache_dir() / "testdata" / "all-minilm-l6-v2" / Path(m.convert["folder"]).name  # as `pull` names it
    if not (folder / "model.safetensors").is_file():
        assert extract_hf_folder(m, folder) == m.sha256
    return folder


def llama_cpp_testdata() -> Path:
    """`vendor/llama.cpp` of the llama-cpp-python sdist (vocab GGUFs, templates, grammars), cached."""
    root = cache_dir() / "testdata" / "llama-cpp-python-0.3.36"
    vendor = root / "vendor" / "llama.cpp"
    if (vendor / "models").is_dir():
        return vendor
    dl = cache_dir() / "testdata" / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    archives = list(dl.glob("llama_cpp_python-0.3.36.tar.gz"))
    if not archives:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "--disable-pip-version-check", "-q", "-d", str(dl), SDIST], check=True)
        archives = list(dl.glob("llama_cpp_python-0.3.36.tar.gz"))
    with tarfile.open(archives[0]) as tar:
        prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
        wanted = [m for m in tar.getmembers()
                  if m.name.startswith(prefix + "models/") or m.name.startswith(prefix + "grammars/")]
        for m in wanted:
            m.name = m.name[len("llama_cpp_python-0.3.36/"):]
        tar.extractall(root, members=wanted, filter="data")
    return vendor


@pytest.fixture(scope="session")
def llama_cpp_data() -> Path:
    return llama_cpp_testdata()
