"""--sleep-idle-seconds, as llama-server: idle past it, the model is released (the memory goes back) and /props says
is_sleeping; /health, /props, /models and /metrics answer without waking it; any other request loads it again
first, and the answers are the same as before the sleep."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-np", "1", "-c", "512", "--sleep-idle-seconds", "1", "--metrics")


@pytest.fixture(scope="module")
def http(server):
    with server.client(timeout=120) as c:
        yield c


def sleeping(http) -> bool:
    return http.get("/props").json()["is_sleeping"]


def wait_for_sleep(http, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sleeping(http):
            return
        time.sleep(0.1)
    raise TimeoutError("the server did not go to sleep")


def complete(http) -> dict:
    r = http.post("/completion", json={"prompt": "The capital of France is", "n_predict": 8, "temperature": 0})
    assert r.status_code == 200
    return r.json()


def test_sleep_releases_the_model_and_a_request_wakes_it(http, server):
    before = complete(http)["content"]
    rss_awake = server.rss_mb()
    wait_for_sleep(http)
    rss_asleep = server.rss_mb()
    assert rss_asleep < rss_awake - 40, (rss_awake, rss_asleep)  # the weights' pages and the KV cache went
    assert "sleeping: the model is released after 1 s idle" in server.log_text()
    assert http.get("/health").json() == {"status": "ok"}
    assert len(http.get("/v1/models").json()["data"]) == 1
    assert sleeping(http)
    assert complete(http)["content"] == before
    assert not sleeping(http)
    assert "awake: the model is loaded again in" in server.log_text()


def test_metrics_do_not_wake_it_and_keep_their_counts(http):
    complete(http)
    http.get("/metrics")  # starts a new throughput window
    wait_for_sleep(http)
    first = http.get("/metrics").text
    assert http.get("/metrics").text == first
    assert sleeping(http)
    predicted = next(float(line.split()[1]) for line in first.splitlines()
                     if line.startswith("llamacpp:tokens_predicted_total "))
    assert predicted >= 16  # the counts since start survive the sleep


@pytest.mark.parametrize(("path", "body"), [
    ("/tokenize", {"content": "Hello"}),
    ("/v1/chat/completions/input_tokens", {"messages": [{"role": "user", "content": "Hello world"}]}),
    ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "Hello world"}]}),
])
def test_other_routes_wake_it(http, path, body):
    wait_for_sleep(http)
    assert http.post(path, json=body).status_code == 200
    assert not sleeping(http)


def test_a_bad_value_is_refused(smollm2_path):
    out = subprocess.run([sys.executable, "-m", "llamacpy", "server", "-m", str(smollm2_path), "--sleep-idle-seconds",
                          "0", "--port", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and "cannot be 0 or less than -1" in out.stderr
