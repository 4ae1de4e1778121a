"""Vertex AI's custom-container contract (AIP_MODE=PREDICTION), as llama-server serves it: the port from
AIP_HTTP_PORT, a health route from AIP_HEALTH_ROUTE, and POST /predict running each instance on the route its
`@requestFormat` names, concurrently; bad instances get their own error and the rest still run."""

from __future__ import annotations

import socket

import pytest

from llamacpy.server.gcp import aliases, request_format

pytestmark = pytest.mark.slow


def test_request_formats_are_llama_servers_aliases():
    assert request_format("/v1/chat/completions") == "chatCompletions"
    assert request_format("/apply-template") == "applyTemplate"
    assert request_format("/completion") == "completion"
    assert aliases(["/chat/completions", "/v1/chat/completions"]) == {"chatCompletions": "/chat/completions"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    port = _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIP_MODE", "PREDICTION")
        mp.setenv("AIP_HTTP_PORT", str(port))
        mp.setenv("AIP_HEALTH_ROUTE", "healthz")
        s = start_server(smollm2_path, "-np", "2", "-c", "1024", "--api-key", "k")
    assert s.url.endswith(f":{port}")
    return s


@pytest.fixture(scope="module")
def http(server):
    with server.client(timeout=120, headers={"Authorization": "Bearer k"}) as c:
        yield c


def test_health_route_from_the_environment(http):
    assert http.get("/healthz").json() == {"status": "ok"}


def test_predict_runs_each_instance_on_its_route(http):
    r = http.post("/predict", json={"instances": [
        {"@requestFormat": "chatCompletions", "max_tokens": 8, "temperature": 0,
         "messages": [{"role": "user", "content": "Say hello"}]},
        {"@requestFormat": "/completion", "n_predict": 4, "prompt": "Once upon", "stream": True},
        {"@requestFormat": "tokenize", "content": "hello world"},
        {"@requestFormat": "noSuchRoute"},
        "not an object",
        {"@requestFormat": "chatCompletions", "messages": "bad"},
    ]})
    assert r.status_code == 200, r.text
    chat, native, tokens, unknown, not_object, bad = r.json()["predictions"]
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["choices"][0]["message"]["content"]
    assert native["tokens_predicted"] == 4 and native["content"]  # "stream" was turned off
    assert tokens["tokens"] and all(isinstance(t, int) for t in tokens["tokens"])
    assert "no handler registered for @requestFormat: noSuchRoute" in unknown["error"]["message"]
    assert not_object["error"]["message"] == "each instance must be a JSON object"
    assert bad["error"]["code"] == 400


@pytest.mark.parametrize("body, message", [
    ({"instances": {}}, "array field named instances"),
    ({"instances": [{}] * 129}, "exceeds maximum size of 128"),
    ([], "must be a JSON object"),
])
def test_predict_rejects_bad_bodies(http, body, message):
    r = http.post("/predict", json=body)
    assert r.status_code == 400 and message in r.json()["error"]["message"]


def test_predict_needs_the_api_key(server):
    with server.client(timeout=30) as c:
        assert c.post("/predict", json={"instances": []}).status_code == 401
