"""Embeddings over HTTP (llama-server's /v1/embeddings, /embedding, /embeddings) with all-MiniLM-L6-v2 and
a decoder, through the `openai` client and httpx against real server processes."""

from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import pytest
from openai import BadRequestError, OpenAI

FOOD, BREAD = "A man is eating food.", "A man is eating a piece of bread."
SBERT_COSINE = 0.7553  # sentence-transformers' all-MiniLM-L6-v2: cos(FOOD, BREAD)
FOOD_IDS = [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]  # HF tokenizers' ids for FOOD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(start_server, minilm_path):
    return start_server(minilm_path, "--embeddings", "-np", "2")


@pytest.fixture(scope="module")
def oai(server):
    return OpenAI(base_url=server.url + "/v1", api_key="none")


def _vec(item) -> np.ndarray:
    return np.array(item.embedding if hasattr(item, "embedding") else item["embedding"], np.float64)


def test_openai_client_embeddings(oai):
    r = oai.embeddings.create(model="minilm", input=[FOOD, BREAD])
    assert r.model == "minilm" and r.object == "list" and [d.index for d in r.data] == [0, 1]
    a, b = (_vec(d) for d in r.data)
    assert a.shape == (384,) and np.linalg.norm(a) == pytest.approx(1, abs=1e-5)
    assert float(a @ b) == pytest.approx(SBERT_COSINE, abs=3e-4)
    assert r.usage.prompt_tokens == r.usage.total_tokens == len(FOOD_IDS) + 11
    one = oai.embeddings.create(model="minilm", input=FOOD)
    assert len(one.data) == 1 and np.abs(_vec(one.data[0]) - a).max() < 1e-6


def test_base64_is_the_float32_bytes(oai, server):
    floats = oai.embeddings.create(model="m", input=FOOD, encoding_format="float").data[0].embedding
    with server.client() as c:
        r = c.post("/v1/embeddings", json={"input": FOOD, "encoding_format": "base64"}).json()
    item = r["data"][0]
    assert item["encoding_format"] == "base64" and item["object"] == "embedding"
    decoded = np.frombuffer(base64.b64decode(item["embedding"]), "<f4")
    np.testing.assert_array_equal(decoded, np.array(floats, np.float32))


def test_token_arrays_and_mixed_inputs_match_text(server):
    with server.client() as c:
        text = c.post("/v1/embeddings", json={"input": FOOD}).json()["data"][0]["embedding"]
        r = c.post("/v1/embeddings", json={"input": [FOOD_IDS, FOOD, [FOOD, 1012]]}).json()
    a, b, mixed = (np.array(d["embedding"]) for d in r["data"])
    assert np.abs(a - np.array(text)).max() < 1e-6 and np.abs(b - a).max() < 1e-6
    assert np.abs(mixed - a).max() > 1e-3  # FOOD [CLS]..[SEP] then a "." is another input
    assert r["usage"]["prompt_tokens"] == 8 + 8 + 9


def test_native_routes_nest_the_vector(server):
    with server.client() as c:
        oai_vec = c.post("/v1/embeddings", json={"input": FOOD}).json()["data"][0]["embedding"]
        for path, body in (("/embedding", {"content": FOOD}), ("/embeddings", {"input": [FOOD, BREAD]}),
                           ("/v1/embeddings", {"content": FOOD})):  # "content" switches to the native shape
            r = c.post(path, json=body).json()
            assert isinstance(r, list) and [x["index"] for x in r] == list(range(len(r)))
            assert len(r[0]["embedding"]) == 1 and len(r[0]["embedding"][0]) == 384
            assert np.abs(np.array(r[0]["embedding"][0]) - oai_vec).max() < 1e-6


@pytest.mark.parametrize("norm", [-1, 0, 1, 2, 3])
def test_embd_normalize(server, norm):
    with server.client() as c:
        raw = np.array(c.post("/v1/embeddings", json={"input": FOOD, "embd_normalize": -1}).json()["data"][0]["embedding"])
        v = np.array(c.post("/v1/embeddings", json={"input": FOOD, "embd_normalize": norm}).json()["data"][0]["embedding"])
    expected = {-1: raw, 0: raw / (np.abs(raw).max() / 32760), 1: raw / np.abs(raw).sum(),
                2: raw / np.linalg.norm(raw), 3: raw / np.cbrt((np.abs(raw) ** 3).sum())}[norm]
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)
    assert norm != -1 or np.linalg.norm(raw) > 1.5  # mean pooling before normalising is not a unit vector


def test_bad_requests(oai, server):
    with pytest.raises(BadRequestError, match="Input content cannot be empty"):
        oai.embeddings.create(model="m", input=[])
    with server.client() as c:
        for body, message in (({"input": FOOD, "encoding_format": "int8"}, "float or base64"),
                              ({"input": [[]]}, "Input content cannot be empty"),
                              ({"prompt": FOOD}, '"input" or "content" must be provided'),
                              ({"input": [FOOD_IDS[:2] + [10**6]]}, "token ids"),
                              ({"input": FOOD, "embd_normalize": "2"}, "embd_normalize"),
                              ({"input": " ".join(["word"] * 600)}, "is too large to process: larger than the max context")):
            r = c.post("/v1/embeddings", json=body)
            assert r.status_code == 400 and message in r.json()["error"]["message"], (body, r.text)


def test_completions_and_rerank_are_501(server):
    with server.client() as c:
        for path in ("/v1/chat/completions", "/v1/completions", "/completion", "/infill"):
            r = c.post(path, json={"prompt": "x", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 501 and "Start it without `--embeddings`" in r.json()["error"]["message"]
        for path in ("/rerank", "/v1/rerank", "/reranking", "/v1/reranking"):
            r = c.post(path, json={"query": "q", "documents": ["d"]})
            assert r.status_code == 501 and "--reranking" in r.json()["error"]["message"]


def test_props_and_models_say_embedding(server):
    with server.client() as c:
        props = c.get("/props").json()
        models = c.get("/v1/models").json()
        tokens = c.post("/tokenize", json={"content": FOOD, "add_special": True}).json()["tokens"]
    assert props["embedding"] is True and props["pooling"] == "mean"
    assert models["data"][0]["meta"]["n_embd"] == 384 and models["models"][0]["capabilities"] == ["embedding"]
    assert tokens == FOOD_IDS


def test_pooling_none_gives_token_vectors(start_server, minilm_path, server):
    none = start_server(minilm_path, "--embeddings", "--pooling", "none")
    with none.client() as c:
        r = c.post("/v1/embeddings", json={"input": FOOD})
        assert r.status_code == 400 and "Pooling type 'none' is not OAI compatible" in r.json()["error"]["message"]
        tokens = c.post("/embedding", json={"content": FOOD}).json()[0]["embedding"]
    with server.client() as c:
        mean = np.array(c.post("/v1/embeddings", json={"input": FOOD, "embd_normalize": -1}).json()["data"][0]["embedding"])
    assert len(tokens) == len(FOOD_IDS) and all(len(t) == 384 for t in tokens)
    np.testing.assert_allclose(np.mean(tokens, axis=0), mean, rtol=1e-4, atol=1e-5)  # unnormalized per token


def test_without_embeddings_flag(start_server, smollm2_path, minilm_path):
    res = subprocess.run([sys.executable, "-m", "llamacpy", "server", "-m", str(minilm_path), "--port", "0"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "start the server with --embeddings" in res.stderr
    chat = start_server(smollm2_path, "-c", "512")
    with chat.client() as c:
        r = c.post("/v1/embeddings", json={"input": FOOD})
        assert r.status_code == 501 and "Start it with `--embeddings`" in r.json()["error"]["message"]
        assert c.post("/rerank", json={"query": "q", "documents": ["d"]}).status_code == 501


def test_decoder_embeddings_are_its_final_hidden_states(start_server, smollm2_path):
    from llamacpy.gguf import GGUFFile
    from llamacpy.models import Segment, load_model
    from llamacpy.tokenizer import Tokenizer

    dec = start_server(smollm2_path, "--embeddings", "--pooling", "last", "-c", "512")
    with dec.client() as c:
        v = np.array(c.post("/v1/embeddings", json={"input": "The capital of France is",
                                                    "embd_normalize": -1}).json()["data"][0]["embedding"])
    g = GGUFFile(smollm2_path)
    model, tok = load_model(g), Tokenizer.from_gguf(g)
    ids = tok.encode("The capital of France is", True, True)
    logits = model.forward(np.array(ids), [Segment(0, 0, len(ids))], model.new_cache(64))[0]
    # the last token's vector, through the output head, gives the generation path's logits
    np.testing.assert_allclose(model.output(v[None].astype(np.float32))[0], logits, rtol=1e-3, atol=1e-3)


def test_prompt_objects_as_llama_server(server):
    """{"prompt_string"} and {"content": [text parts]} prompts embed as their text; bad ones are a 400."""
    parts = {"content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}
    with server.client() as c:
        r = c.post("/v1/embeddings", json={"input": ["hello world", parts, {"prompt_string": "hello world"}]})
        vecs = [d["embedding"] for d in r.json()["data"]]
        assert vecs[0] == vecs[1] == vecs[2]
        for bad in ({"content": "hello"}, {"content": [{"type": "unknown"}]}, []):
            assert c.post("/v1/embeddings", json={"input": bad}).status_code == 400
        image = {"content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
        assert c.post("/v1/embeddings", json={"input": image}).status_code == 501
