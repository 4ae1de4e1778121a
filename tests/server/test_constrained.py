"""Constrained output end to end (llguidance): GBNF `grammar`, `json_schema`, and chat `response_format`,
streamed and not, over the native and OpenAI routes; invalid constraints are a 400 and the server goes on."""

from __future__ import annotations

import json

import pytest
from openai import BadRequestError, OpenAI
from serverkit import sse_events

pytestmark = pytest.mark.slow

YES_NO = 'root ::= ("yes" | "no")'
QUESTION = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
PERSON = [{"role": "user", "content": "Describe a person named Ann as JSON."}]
SCHEMA = {"type": "object", "required": ["name", "age", "color"],
          "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"},
                         "color": {"enum": ["red", "green", "blue"]}}}
GREEDY = {"temperature": 0, "max_tokens": 120}


@pytest.fixture(scope="module")
def server(start_server, smollm2_path):
    return start_server(smollm2_path, "-np", "2", "-c", "2048")


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused")


@pytest.fixture(scope="module")
def http(server):
    with server.client(timeout=120) as c:
        yield c


def check_person(text: str) -> None:
    """`text` is JSON valid under SCHEMA (checked by hand: no jsonschema dependency)."""
    value = json.loads(text)
    assert isinstance(value, dict) and set(value) == {"name", "age", "color"}
    assert isinstance(value["name"], str) and len(value["name"]) <= 24
    assert isinstance(value["age"], int) and not isinstance(value["age"], bool)
    assert value["color"] in ("red", "green", "blue")


def test_gbnf_grammar_gives_exactly_one_of_its_words(http):
    r = http.post("/v1/chat/completions", json={"messages": QUESTION, "grammar": YES_NO, **GREEDY})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] in ("yes", "no")
    assert choice["finish_reason"] == "stop"


def test_gbnf_grammar_streamed_on_native_completion(http):
    body = {"prompt": "Q: Is water wet?\nA:", "grammar": 'root ::= " " ("yes" | "no")', "n_predict": 20,
            "temperature": 0.8, "seed": 7, "stream": True}
    with http.stream("POST", "/completion", json=body) as r:
        assert r.status_code == 200
        events = sse_events(r.iter_lines())
    text = "".join(e["content"] for e in events)
    assert text in (" yes", " no")
    assert events[-1]["stop"] and events[-1]["stop_type"] == "eos"


def test_json_schema_via_openai_response_format(client):
    r = client.chat.completions.create(
        model="x", messages=PERSON, **GREEDY,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}})
    check_person(r.choices[0].message.content)
    assert r.choices[0].finish_reason == "stop"


def test_json_schema_streamed_via_openai(client):
    stream = client.chat.completions.create(
        model="x", messages=PERSON, stream=True, **GREEDY,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}})
    chunks = list(stream)
    check_person("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_json_schema_field_on_completion_routes(http):
    prompt = "A person as JSON with name, age and favourite color:\n"
    r = http.post("/completion", json={"prompt": prompt, "json_schema": SCHEMA, "n_predict": 120,
                                       "temperature": 0})
    check_person(r.json()["content"])
    r = http.post("/v1/completions", json={"prompt": prompt, "json_schema": SCHEMA, **GREEDY})
    check_person(r.json()["choices"][0]["text"])


def test_response_format_json_object_gives_json(http):
    messages = [{"role": "user", "content": "Give a JSON object with the keys city and country for Paris."}]
    r = http.post("/v1/chat/completions", json={"messages": messages, **GREEDY,
                                                "response_format": {"type": "json_object"}})
    json.loads(r.json()["choices"][0]["message"]["content"])
    r = http.post("/v1/chat/completions", json={"messages": PERSON, **GREEDY,
                                                "response_format": {"type": "json_object", "schema": SCHEMA}})
    check_person(r.json()["choices"][0]["message"]["content"])


def test_response_format_text_is_unconstrained(http):
    r = http.post("/v1/chat/completions", json={"messages": QUESTION, "response_format": {"type": "text"},
                                                "temperature": 0, "max_tokens": 4})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


BAD = [  # (route, extra body fields, words the error message must contain)
    ("/v1/chat/completions", {"grammar": "root ::= foo"}, ["invalid grammar", "foo"]),
    ("/completion", {"grammar": 'root ::= "a" ('}, ["invalid grammar"]),
    ("/completion", {"json_schema": {"type": "nonsense"}}, ["invalid JSON schema", "nonsense"]),
    ("/completion", {"json_schema": "an object"}, ["'json_schema' must be a JSON schema object"]),
    ("/v1/chat/completions", {"response_format": {"type": "xml"}}, ["response_format type must be one of"]),
    ("/v1/chat/completions", {"grammar": YES_NO, "json_schema": SCHEMA}, ["not both"]),
    ("/completion", {"grammar": YES_NO, "json_schema": {}}, ["not both"]),
    ("/v1/chat/completions", {"grammar": YES_NO, "response_format": {"type": "json_object"}}, ["grammar"]),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 3}}}},
     ["invalid JSON schema"]),
]


@pytest.mark.parametrize(("route", "fields", "words"), BAD)
def test_invalid_constraints_are_400_and_the_server_goes_on(http, route, fields, words):
    body = {"messages": QUESTION} if route == "/v1/chat/completions" else {"prompt": "Hi"}
    r = http.post(route, json={**body, **fields, "max_tokens": 4})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert all(w in error["message"] for w in words), error["message"]
    assert http.get("/health").json() == {"status": "ok"}


def test_openai_client_sees_the_400(client):
    with pytest.raises(BadRequestError, match="invalid JSON schema"):
        client.chat.completions.create(model="x", messages=QUESTION, max_tokens=4, response_format={
            "type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nonsense"}}})


def test_vocabulary_is_built_once_and_logged(server, http):
    http.post("/completion", json={"prompt": "Hi", "grammar": YES_NO, "n_predict": 4})
    assert server.log_text().count("grammar vocabulary of 49152 tokens built in") == 1
