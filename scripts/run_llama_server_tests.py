#!/usr/bin/env python3
"""Run llama.cpp's own server test suite (tools/server/tests of the llama-cpp-python==0.3.36 sdist, llama.cpp
0c1e570) against `llamacpy server`, and against llama-server with the same models, side by side.

    python3 scripts/run_llama_server_tests.py                       # llamacpy
    LLAMA_SERVER=/path/to/bin/llama-server python3 scripts/run_llama_server_tests.py --servers llama-server
    python3 scripts/run_llama_server_tests.py -k "test_basic or test_tokenize"   # a part (pytest -k)

Each run keeps its JUnit XML and each test's outcome (JSON) in --results; the report (--out) puts every server with
a result there side by side. `-k ... --update` reruns some tests and keeps the other outcomes of the last run.

Not in CI: the whole suite starts a server per test (about an hour for both servers on 2 cores).

No model hub is reachable, so the suite's Hugging Face downloads are replaced by local catalog models (a plugin
patches its ServerPreset/ServerProcess before a server starts): the tiny llamas by smollm2-135m-instruct, the bert
embedder by all-minilm-l6-v2, the infill model by qwen2.5-coder-0.5b-instruct. Tests that check the exact words
of the original tiny models, or need a model we have no substitute for (reranker, MoE, vision, LoRA), fail for
both servers alike; the comparison is the point: the same tests, the same models, pass/fail for each server.

The sdist is found in $LCPP_DIR (shared/tools/build-llamacpp.sh's folder, default /tmp/llamacpp-ref) or fetched
with `pip download`. The suite needs aiohttp, wget, prometheus-client, filelock, openai, requests (pip installs
them when missing). Writes a per-test table to --out (default: docs/llama-server-tests.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDIST = "llama_cpp_python-0.3.36"
SUITE = f"{SDIST}/vendor/llama.cpp/tools/server/tests"
NEEDS = {"aiohttp": "aiohttp", "wget": "wget", "prometheus_client": "prometheus-client", "filelock": "filelock"}

# The plugin: loaded by pytest (-p) in the suite's folder, before its conftest runs ServerPreset.load_all().
PLUGIN = r'''
import os
import utils

MODELS = {  # the suite's Hugging Face (repo, file) -> a local model
    ("ggml-org/test-model-stories260K", None): "smollm2-135m-instruct",
    ("ggml-org/models", "tinyllamas/stories260K.gguf"): "smollm2-135m-instruct",
    ("ggml-org/models", "tinyllamas/stories15M-q4_0.gguf"): "smollm2-135m-instruct",
    ("ggml-org/models", "bert-bge-small/ggml-model-f16.gguf"): "all-minilm-l6-v2",
    ("ggml-org/test-model-stories260K-infill", None): "qwen2.5-coder-0.5b-instruct",
}
PATHS = dict(line.split("=", 1) for line in os.environ["LOCAL_MODELS"].split(";") if line)

utils.ServerPreset.load_all = staticmethod(lambda: None)  # nothing to download
_start = utils.ServerProcess.start


def start(self, *args, **kwargs):
    local = MODELS.get((self.model_hf_repo, self.model_hf_file))
    if local is not None:
        self.model_file, self.model_hf_repo, self.model_hf_file = PATHS[local], None, None
    self.server_path = os.environ["SERVER_UNDER_TEST"]
    return _start(self, *args, **kwargs)


utils.ServerProcess.start = start
'''


def find_suite(cache: Path) -> Path:
    suite = cache / SUITE
    if suite.is_dir():
        return suite
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{SDIST}.tar.gz"
    if not tarball.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", str(cache), "llama_cpp_python==0.3.36"], check=True)
    subprocess.run(["tar", "xzf", str(tarball), "-C", str(cache), f"{SUITE}"], check=True)
    return suite


def local_models() -> str:
    from llamacpy.catalog import pull

    names = ("smollm2-135m-instruct", "all-minilm-l6-v2", "qwen2.5-coder-0.5b-instruct")
    return ";".join(f"{n}={pull(n)}" for n in names)


def llamacpy_wrapper(folder: Path) -> Path:
    wrapper = folder / "llamacpy-server"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m llamacpy server \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def run_suite(suite: Path, server: Path, models: str, select: str | None, work: Path, xml: Path) -> None:
    """Run the suite on one server binary, its outcomes into `xml`."""
    # at tools/server/tests of a folder, as in llama.cpp's tree: test_tools_builtin reads and greps its own file
    # through that path
    tests = work / xml.stem / "tools" / "server" / "tests"
    shutil.copytree(suite, tests)
    (tests / "local_models_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "LOCAL_MODELS": models, "SERVER_UNDER_TEST": str(server), "PYTHONPATH": os.pathsep.join(
        p for p in (str(tests), os.environ.get("PYTHONPATH")) if p)}  # a PYTHONPATH given picks the llamacpy tested
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "local_models_plugin", "-q", "-o", "addopts=",
           "--junitxml", str(xml), *(["--timeout=300"] if _has_timeout() else []), "unit"]
    if select:
        cmd += ["-k", select]
    print(f"== {xml.stem}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=tests, env=env, check=False)  # failing tests are the report, not an error


def _has_timeout() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytest_timeout") is not None


def outcomes(xml: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        test = f"{case.get('classname', '').removeprefix('unit.')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        out[test] = ("failed" if "failure" in kinds else "error" if "error" in kinds
                     else "skipped" if "skipped" in kinds else "passed")
    return out


def report(results: dict[str, dict[str, str]], out: Path, select: str | None) -> None:
    servers = list(results)
    tests = sorted({t for r in results.values() for t in r})
    totals = {s: sum(1 for t in tests if results[s].get(t) == "passed") for s in servers}
    lines = ["# llama.cpp's server test suite against llamacpy", "",
             "Written by `scripts/run_llama_server_tests.py` (llama.cpp 0c1e570's `tools/server/tests`, "
             "Hugging Face models replaced by local ones as that script says)" + (f", `-k {select}`" if select
                                                                                  else "") + ".", "",
             "| | " + " | ".join(servers) + " |", "|---|" + "---|" * len(servers),
             "| passed | " + " | ".join(f"{totals[s]} of {len(tests)}" for s in servers) + " |", "",
             "| module | tests | " + " | ".join(servers) + " |", "|---|---|" + "---|" * len(servers)]
    for module in sorted({t.split("::")[0] for t in tests}):
        of = [t for t in tests if t.startswith(module + "::")]
        lines.append(f"| `{module}` | {len(of)} | " + " | ".join(
            str(sum(results[s].get(t) == "passed" for t in of)) for s in servers) + " |")
    lines += ["", "| test | " + " | ".join(servers) + " |", "|---|" + "---|" * len(servers)]
    for t in tests:
        lines.append(f"| `{t}` | " + " | ".join(results[s].get(t, "-") for s in servers) + " |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="llamacpy",
                    help="comma list of llamacpy, llama-server ($LLAMA_SERVER) (default: llamacpy)")
    ap.add_argument("-k", dest="select", help="pytest -k expression: run a part of the suite")
    ap.add_argument("--results", type=Path, default=ROOT / "build/llama-server-tests", help="JUnit XML per server")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/llama-server-tests.md")
    ap.add_argument("--update", action="store_true",
                    help="with -k: replace only the outcomes of the tests run, keep the others of the last run")
    a = ap.parse_args()
    missing = [pkg for mod, pkg in NEEDS.items() if __import__("importlib").util.find_spec(mod) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    suite = find_suite(Path(os.environ.get("LCPP_DIR", "/tmp/llamacpp-ref")))
    models = local_models()
    a.results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lcpp-server-tests-") as tmp:
        work = Path(tmp)
        for name in a.servers.split(","):
            binary = llamacpy_wrapper(work) if name == "llamacpy" else Path(os.environ["LLAMA_SERVER"])
            xml = a.results / f"{name}.xml"
            run_suite(suite, binary, models, a.select, work, xml)
            kept = a.results / f"{name}.json"  # each test's last outcome: --update keeps the tests not run now
            merged = json.loads(kept.read_text()) if a.update and kept.exists() else {}
            kept.write_text(json.dumps({**merged, **outcomes(xml)}, indent=0, sort_keys=True))
    results = {name: json.loads((a.results / f"{name}.json").read_text()) for name in ("llamacpy", "llama-server")
               if (a.results / f"{name}.json").exists()}
    report(results, a.out, None if a.update else a.select)
    return 0


if __name__ == "__main__":
    sys.exit(main())
