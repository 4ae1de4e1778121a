"""`llamacpy bench`: llama-bench's tests (-p, -n, -pg, -d) and its table, on a tiny random-weight model."""

from __future__ import annotations

import json
import subprocess
import sys

# llama-bench 0c1e570's header and the test names it prints for `-p 8 -n 4 -pg 8,4 -d 0,8`
HEADER = ("| model                          |       size |     params | backend    | threads |            test |"
          "                  t/s |")
TESTS = ["pp8", "tg4", "pp8+tg4", "pp8 @ d8", "tg4 @ d8", "pp8+tg4 @ d8"]


def bench(path, *args: str) -> str:
    cmd = [sys.executable, "-m", "llamacpy", "bench", "-m", str(path), "-p", "8", "-n", "4", "-pg", "8,4",
           "-d", "0,8", "-r", "2", "-t", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout


def test_bench_table_has_llama_bench_tests_and_columns(tiny_model):
    lines = bench(tiny_model("llama")).splitlines()
    assert lines[0] == HEADER
    rows = [line for line in lines[2:] if line.startswith("|")]
    assert [r.split("|")[6].strip() for r in rows] == TESTS
    for r in rows:
        mean, sd = r.split("|")[7].split("±")
        assert float(mean) > 0 and float(sd) >= 0


def test_bench_json_counts_prompt_and_generated_tokens(tiny_model):
    results = json.loads(bench(tiny_model("llama"), "-o", "json"))
    got = [(r["n_prompt"], r["n_gen"], r["n_depth"]) for r in results]
    assert got == [(8, 0, 0), (0, 4, 0), (8, 4, 0), (8, 0, 8), (0, 4, 8), (8, 4, 8)]
    assert all(len(r["samples_ts"]) == 2 and r["avg_ts"] > 0 for r in results)


def test_bench_rejects_a_bad_pg(tiny_model):
    cmd = [sys.executable, "-m", "llamacpy", "bench", "-m", str(tiny_model("llama")), "-pg", "512"]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "expected <pp,tg>" in p.stderr
