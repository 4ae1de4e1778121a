"""Router model sources: the models folder, the preset INI (llama-server's format), flag rendering."""

from __future__ import annotations

import argparse

import pytest

from llamacpy.cli.server import add_arguments
from llamacpy.router.sources import FlagTable, PresetError, discover, read_preset, scan_dir


@pytest.fixture
def flags() -> FlagTable:
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    return FlagTable(p)


def test_scan_dir_files_and_folders(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b-mmproj.gguf").write_bytes(b"")  # a projector, not a model
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "big").mkdir()
    for name in ("big-00002-of-00002.gguf", "big-00001-of-00002.gguf", "mmproj-big.gguf"):
        (tmp_path / "big" / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    found = scan_dir(tmp_path)
    assert sorted(found) == ["a", "big"]
    assert found["a"].model == str(tmp_path / "a.gguf")
    assert found["big"].model.endswith("big-00001-of-00002.gguf")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        scan_dir(tmp_path / "missing")


def test_preset_sections_global_aliases_and_key_forms(tmp_path, flags):
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "x.gguf").write_bytes(b"")
    preset = tmp_path / "p.ini"
    preset.write_text("version = 1\n[*]\nc = 1024\nt = 1\n"
                      "[a]\nctx-size = 2048\nLLAMA_ARG_N_PREDICT = 7\nload-on-startup = true\nslots = false\n"
                      "[team/x]\nmodel = x.gguf\nalias = ex, xx\nstop-timeout = 3\nhost = 0.0.0.0\n")
    models = read_preset(preset, scan_dir(tmp_path), flags)
    a, x = models["a"], models["team/x"]
    # [*] first, the section after it: the child's argparse keeps the last value of a flag
    assert a.flags == ["--ctx-size", "1024", "--threads", "1", "--ctx-size", "2048", "--n-predict", "7",
                       "--no-slots"]
    assert a.load_on_startup and a.origin == "dir"
    assert x.model == str(tmp_path / "x.gguf") and x.aliases == ["ex", "xx"] and x.stop_timeout == 3.0
    assert x.origin == "preset" and "--host" not in x.flags  # the router decides host and port
    assert models["x"].flags == ["--ctx-size", "1024", "--threads", "1"]  # [*] without a section too


@pytest.mark.parametrize("text, message", [
    ("version = 1\n[a]\nno-such-flag = 1\n", "unknown key 'no-such-flag'"),
    ("version = 1\n[ghost]\nc = 1\n", "no model of that name"),
    ("version = 2\n", "unsupported preset version"),
    ("version = 1\n[a]\nslots = maybe\n", "expected true or false"),
    ("version = 1\n[a\n", "p.ini"),
])
def test_preset_errors_name_the_file_and_the_problem(tmp_path, flags, text, message):
    (tmp_path / "a.gguf").write_bytes(b"")
    preset = tmp_path / "p.ini"
    preset.write_text(text)
    with pytest.raises(PresetError, match=message) as e:
        read_preset(preset, scan_dir(tmp_path), flags)
    assert str(preset) in str(e.value)


def test_router_command_line_goes_to_children_except_router_flags(flags):
    a = flags.parser.parse_args(["--models-dir", "/tmp", "--port", "9", "--api-key", "k", "-c", "512", "-t", "1",
                                 "--no-slots", "--temp", "0.5", "-l", "15+1", "-np", "2"])
    assert flags.explicit(a) == ["--threads", "1", "--ctx-size", "512", "--parallel", "2", "--no-slots",
                                 "--temperature", "0.5", "--logit-bias", "15+1"]


def test_llama_server_only_flags_go_to_children_as_given(flags):
    a = flags.parser.parse_args(["--models-dir", "/tmp", "-ngl", "99", "-nkvo", "-fa", "on", "--no-jinja"])
    assert flags.explicit(a) == ["--no-jinja", "-fa", "on", "-nkvo", "-ngl", "99"]


@pytest.mark.parametrize("key, value, argv", [
    ("n-gpu-layers", "99", ["--n-gpu-layers", "99"]),
    ("LLAMA_ARG_N_GPU_LAYERS", "99", ["--n-gpu-layers", "99"]),
    ("kv-offload", "false", ["--no-kv-offload"]),
    ("no-kv-offload", "true", ["--no-kv-offload"]),
    ("nkvo", "1", ["--no-kv-offload"]),
    ("LLAMA_ARG_NO_KV_OFFLOAD", "1", ["--no-kv-offload"]),
    ("no-slots", "true", ["--no-slots"]),
    ("LLAMA_ARG_ENDPOINT_METRICS", "1", ["--metrics"]),  # env names that are not the flag's name
    ("jinja", "false", ["--no-jinja"]),
])
def test_preset_keys_of_llama_server_flags(tmp_path, flags, key, value, argv):
    (tmp_path / "a.gguf").write_bytes(b"")
    preset = tmp_path / "p.ini"
    preset.write_text(f"version = 1\n[a]\n{key} = {value}\n")
    assert read_preset(preset, scan_dir(tmp_path), flags)["a"].flags == argv


def test_discover_merges_catalog_dir_and_preset(tmp_path, flags):
    (tmp_path / "smollm2-135m-instruct.gguf").write_bytes(b"")
    preset = tmp_path / "p.ini"
    preset.write_text("version = 1\n[gemma-3-270m]\nc = 64\n")
    models = discover(str(tmp_path), str(preset), True, flags)
    assert models["smollm2-135m-instruct"].origin == "dir"  # the folder overrides the catalog
    assert models["gemma-3-270m"].model == "gemma-3-270m" and models["gemma-3-270m"].flags == ["--ctx-size", "64"]
    assert models["qwen2.5-coder-0.5b-instruct"].origin == "catalog"
