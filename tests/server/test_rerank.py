"""Reranking over HTTP (llama-server's post_rerank: /rerank, /reranking, /v1/rerank, /v1/reranking) on the tiny
bert reranker of scripts/make_tiny_models.py, whose scores llama-server recorded (tests/data/arch/*/bert-rerank.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamacpy.kernels.simd import HAS_AVX512

_REC = Path(__file__).resolve().parents[1] / "data/arch" / ("avx512" if HAS_AVX512 else "avx2") / "bert-rerank.json"
REC = json.loads(_REC.read_text()) if _REC.exists() else None
TOLERANCE = 5e-3


@pytest.fixture(scope="module")
def server(start_server, tiny_model):
    return start_server(tiny_model("bert-rerank"), "--reranking", "-np", "2")


@pytest.mark.skipif(REC is None, reason="bert-rerank is not recorded on this instruction set")
def test_scores_and_order_are_llama_servers(server):
    body = REC["rerank"]["request"]
    with server.client() as c:
        for path in ("/rerank", "/v1/rerank", "/reranking", "/v1/reranking"):
            r = c.post(path, json=body)
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["object"] == "list" and got["usage"]["prompt_tokens"] == got["usage"]["total_tokens"] > 0
            want = REC["rerank"]["response"]
            assert [x["index"] for x in got["results"]] == [x["index"] for x in want]
            for g, w in zip(got["results"], want, strict=True):
                assert abs(g["relevance_score"] - w["relevance_score"]) < TOLERANCE


def test_top_n_and_the_tei_form(server):
    docs = ["Paris is in France.", "Bananas are yellow.", "The capital of France is Paris."]
    with server.client() as c:
        full = c.post("/v1/rerank", json={"query": "capital of France", "documents": docs}).json()["results"]
        top = c.post("/v1/rerank", json={"query": "capital of France", "documents": docs, "top_n": 2}).json()
        tei = c.post("/rerank", json={"query": "capital of France", "texts": docs, "return_text": True}).json()
    assert [r["relevance_score"] for r in full] == sorted((r["relevance_score"] for r in full), reverse=True)
    assert top["results"] == full[:2]
    assert isinstance(tei, list) and [t["index"] for t in tei] == [r["index"] for r in full]
    assert all(t["text"] == docs[t["index"]] and "score" in t for t in tei)


def test_bad_requests_get_400_and_the_server_keeps_serving(server):
    with server.client() as c:
        for body, message in (({"documents": ["d"]}, '"query" must be provided'),
                              ({"query": 3, "documents": ["d"]}, '"query" must be a string'),
                              ({"query": "q", "documents": []}, '"documents" must be a non-empty string array'),
                              ({"query": "q", "documents": ["d", 4]}, '"documents" must be a non-empty string array'),
                              ({"query": "q", "documents": ["word " * 3000]}, "is too large to process")):
            r = c.post("/v1/rerank", json=body)
            assert r.status_code == 400 and message in r.json()["error"]["message"], (body, r.text)
        assert c.post("/v1/rerank", json={"query": "q", "documents": ["d"]}).status_code == 200


def test_a_model_without_a_classification_head_is_refused(minilm_path):
    res = subprocess.run([sys.executable, "-m", "llamacpy", "server", "-m", str(minilm_path), "--reranking",
                          "--port", "0"], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "has no classification head" in res.stderr
