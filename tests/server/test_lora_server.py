"""`llamacpy server --lora`: GET/POST /lora-adapters and a request's own "lora" as llama-server answers them, the
replies equal to llama-server's recorded with the same adapter (tests/data/llama_server_lora*/), requests with
different adapter scales served side by side (each step takes one set of scales), bad "lora" values a 400."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from llamacpy.kernels.simd import HAS_AVX512

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import make_lora_adapter

RECORDING = ROOT / "tests/data" / ("llama_server_lora" if HAS_AVX512 else "llama_server_lora_avx2") / \
    "SmolLM2-135M-Instruct.Q4_1.json"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not RECORDING.exists(), reason="no LoRA recording for this instruction set")]


@pytest.fixture(scope="module")
def recording() -> dict:
    return json.loads(RECORDING.read_text())


@pytest.fixture(scope="module")
def adapter(smollm2_path, tmp_path_factory) -> Path:
    return make_lora_adapter.make(smollm2_path, tmp_path_factory.mktemp("lora") / "lora.gguf")


@pytest.fixture(scope="module")
def server(start_server, smollm2_path, adapter):
    return start_server(smollm2_path, "-c", "1024", "-np", "2", "--lora", str(adapter))


def _complete(url: str, case: dict) -> list[int]:
    r = httpx.post(f"{url}/completion", json=case["request"], timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def test_adapters_scales_and_replies(server, recording, adapter):
    url = server.url
    listed = httpx.get(f"{url}/lora-adapters").json()
    want = [{**a, "path": str(adapter)} for a in recording["lora"]["adapters"]]
    assert listed == want
    lora = recording["lora"]
    cases = [c for key in ("scale 1 (--lora)", "scale 0.5 (request)", "scale 0 (request)") for c in lora[key]]
    with ThreadPoolExecutor(len(cases)) as pool:  # two slots: different scales wait for their own steps
        got = list(pool.map(lambda c: _complete(url, c), cases))
    assert got == [c["tokens"] for c in cases]
    r = httpx.post(f"{url}/lora-adapters", json=[{"id": 0, "scale": 0.25}])
    assert r.status_code == 200 and r.json() == lora["post"]["response"]
    assert httpx.get(f"{url}/lora-adapters").json()[0]["scale"] == 0.25
    for c in lora["scale 0.25 (POST /lora-adapters)"]:
        assert _complete(url, c) == c["tokens"]
    httpx.post(f"{url}/lora-adapters", json=[{"id": 0, "scale": 1.0}])


@pytest.mark.parametrize("route, body", [
    ("/lora-adapters", {"id": 0, "scale": 1}),
    ("/completion", {"prompt": "hi", "lora": {"id": 0}}),
    ("/completion", {"prompt": "hi", "lora": [{"id": "zero", "scale": 1}]}),
])
def test_bad_lora_values_are_400(server, route, body):
    r = httpx.post(f"{server.url}{route}", json=body)
    assert r.status_code == 400, r.text
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_init_without_apply_starts_at_scale_zero(start_server, smollm2_path, adapter, recording):
    """llama-server's help: "load LoRA adapters without applying them (apply later via POST /lora-adapters)".
    llamacpy does that: scale 0 until POSTed. (llama-server 0c1e570 lists and applies them at 1.0 all the same, as
    its recording shows: its slots take the unapplied list's scales.)"""
    assert recording["init_without_apply"]["adapters"][0]["scale"] == 1.0
    server = start_server(smollm2_path, "-c", "512", "-np", "1", "--lora-scaled", f"{adapter}:0.5",
                          "--lora-init-without-apply")
    assert httpx.get(f"{server.url}/lora-adapters").json()[0]["scale"] == 0.0
    for c in recording["base"]:
        assert _complete(server.url, {"request": {**c["request"]}}) == c["tokens"]
    httpx.post(f"{server.url}/lora-adapters", json=[{"id": 0, "scale": 0.5}])
    for c in recording["lora"]["scale 0.5 (request)"]:
        body = {k: v for k, v in c["request"].items() if k != "lora"}
        assert _complete(server.url, {"request": body}) == c["tokens"]
