"""The command line, run as a user would (subprocesses, real default model)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llamacpy.catalog import catalog


def cli(*args: str, input: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacpy", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, check=False)


def test_help_lists_subcommands():
    r = cli("--help")
    assert r.returncode == 0
    for name in ("complete", "chat", "perplexity", "tokenize", "pull"):
        assert name in r.stdout


def test_pull_list_shows_catalog():
    r = cli("pull", "--list")
    assert r.returncode == 0
    for name in catalog():
        assert name in r.stdout


def test_unknown_model_is_a_clear_error():
    r = cli("complete", "-m", "no-such-model", "-p", "hi")
    assert r.returncode == 1
    assert "no-such-model" in r.stderr and "catalog" in r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 30)
    r = cli("complete", "-m", str(bad), "-p", "hi")
    assert r.returncode == 1 and str(bad) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_tokenize_prints_llama_cpp_ids(smollm2_path):
    r = cli("tokenize", "-m", str(smollm2_path), "-p", "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[504, 3575, 282, 4649, 314]"


@pytest.mark.slow
def test_complete_greedy_prints_only_the_continuation(smollm2_path):
    r = cli("complete", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "4", "--temp", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris.")  # llama.cpp's greedy continuation: " Paris.\n\nThe United ..."
    assert "The capital" not in r.stdout


@pytest.mark.slow
def test_complete_same_seed_same_text(smollm2_path):
    args = ("complete", "-m", str(smollm2_path), "-p", "Once upon a time", "-n", "16", "--temp", "1.0", "-s", "123")
    a, b = cli(*args), cli(*args)
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout.strip()


@pytest.mark.slow
def test_chat_answers_and_exits(smollm2_path):
    r = cli("chat", "-m", str(smollm2_path), "--temp", "0", "-n", "24",
            input="What is 2+2? Answer briefly.\nAnd 3+3?\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("The answer is 4.\n")
    assert r.stdout[len("The answer is 4.\n"):].strip()  # a second reply, with the first turn in the history


@pytest.mark.slow
def test_chat_ctrl_c_stops_the_reply_not_the_program(smollm2_path):
    import os
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "llamacpy", "chat", "-m", str(smollm2_path), "--temp", "0",
                          "-n", "2000", "--ignore-eos"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        p.stdin.write("Tell me a very long story.\n")
        p.stdin.flush()
        first = p.stdout.read(8)  # the reply is streaming
        assert first
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGINT)
        p.stdin.write("/exit\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "[stopped]" in out
