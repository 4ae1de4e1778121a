"""Router mode with an embedding model beside a chat model: a preset starts the BERT child with
`--embeddings`; the router relays the embedding routes to it and llama-server's 501s from the chat child."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI
from routerkit import RouterProcess

pytestmark = pytest.mark.slow

FOOD, BREAD = "A man is eating food.", "A man is eating a piece of bread."
COSINE = 0.7553  # sentence-transformers' all-MiniLM-L6-v2 (mean pooling, L2 norm)


@pytest.fixture(scope="module")
def router(tmp_path_factory, smollm2_path: Path, minilm_path: Path):
    preset = tmp_path_factory.mktemp("router-embd") / "preset.ini"
    preset.write_text(f"version = 1\n[*]\nc = 512\nt = 1\n"
                      f"[minilm]\nmodel = {minilm_path}\nembeddings = true\n"
                      f"[smol]\nmodel = {smollm2_path}\n")
    r = RouterProcess("--models-preset", str(preset), "--no-models-autoload")
    yield r
    r.stop()


def test_openai_embeddings_through_the_router(router):
    assert router.http.post("/models/load", json={"model": "minilm"}).json() == {"success": True}
    router.wait_status("minilm", "loaded")
    client = OpenAI(base_url=router.url + "/v1", api_key="none")
    out = client.embeddings.create(model="minilm", input=[FOOD, BREAD])
    a, b = (np.array(d.embedding) for d in out.data)
    assert out.model == "minilm" and a.shape == (384,)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) == pytest.approx(COSINE, abs=2e-3)
    native = router.http.post("/embedding", json={"model": "minilm", "content": FOOD})
    assert native.status_code == 200
    assert np.allclose(native.json()[0]["embedding"][0], a, atol=1e-6)


def test_a_chat_model_answers_embeddings_with_501_and_rerank_is_501(router):
    assert router.http.post("/models/load", json={"model": "smol"}).json() == {"success": True}
    router.wait_status("smol", "loaded")
    r = router.http.post("/v1/embeddings", json={"model": "smol", "input": FOOD})
    assert r.status_code == 501 and "--embeddings" in r.json()["error"]["message"]
    r = router.http.post("/v1/rerank", json={"model": "minilm", "query": "food", "documents": [FOOD, BREAD]})
    assert r.status_code == 501 and "--reranking" in r.json()["error"]["message"]
    chat = router.http.post("/v1/chat/completions", json={
        "model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]


def test_an_embedding_model_answers_chat_with_501(router):
    r = router.http.post("/v1/chat/completions", json={
        "model": "minilm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert r.status_code == 501 and "--embeddings" in r.json()["error"]["message"]


def test_loaded_models_show_their_childs_meta(router):
    assert router.http.post("/models/load", json={"model": "minilm"}).status_code in (200, 400)  # 400: running
    router.wait_status("minilm", "loaded")
    listed = {m["id"]: m for m in router.http.get("/v1/models").json()["data"]}
    meta = listed["minilm"]["meta"]
    assert meta["n_embd"] == 384 and meta["n_vocab"] == 30522 and meta["n_ctx_train"] == 512
    assert router.http.post("/models/unload", json={"model": "minilm"}).json() == {"success": True}
    router.wait_status("minilm", "unloaded")
    assert "meta" not in {m["id"]: m for m in router.http.get("/v1/models").json()["data"]}["minilm"]
