"""End to end with the official `openai` client against a live `sglrs serve`."""

from __future__ import annotations

import json

import jsonschema
import pytest
from live_server import API_KEY

openai = pytest.importorskip("openai")

CHAT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key=API_KEY, max_retries=0)


def model_name(client) -> str:
    return client.models.list().data[0].id


def test_chat(client):
    resp = client.chat.completions.create(
        model=model_name(client), messages=CHAT, max_tokens=8, temperature=0, user="tester"
    )
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens <= 8 and resp.usage.prompt_tokens > 0
    assert resp.usage.prompt_tokens_details is not None  # --enable-cache-report


def test_chat_n_seed_and_logprobs(client):
    kwargs = dict(model="m", messages=CHAT, max_tokens=4, temperature=1.0, seed=7, n=2)
    resp = client.chat.completions.create(**kwargs, logprobs=True, top_logprobs=2)
    assert [c.index for c in resp.choices] == [0, 1]
    for choice in resp.choices:
        assert len(choice.logprobs.content) >= 1
        assert len(choice.logprobs.content[0].top_logprobs) == 2
    again = client.chat.completions.create(**kwargs)
    assert [c.message.content for c in again.choices] == [c.message.content for c in resp.choices]


def test_completions(client):
    resp = client.completions.create(
        model="m", prompt=["The sky is", "Water is"], max_tokens=5, temperature=0, logprobs=1
    )
    assert len(resp.choices) == 2
    for choice in resp.choices:
        assert choice.text and len(choice.logprobs.tokens) == len(choice.logprobs.token_logprobs)
    assert resp.usage.completion_tokens == sum(len(c.logprobs.tokens) for c in resp.choices)


def test_chat_stream_with_usage(client):
    plain = client.chat.completions.create(model="m", messages=CHAT, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(
        model="m",
        messages=CHAT,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_completions_stream(client):
    stream = client.completions.create(
        model="m", prompt="One, two,", max_tokens=6, temperature=0, stream=True
    )
    text = "".join(c.choices[0].text for c in stream)
    plain = client.completions.create(model="m", prompt="One, two,", max_tokens=6, temperature=0)
    assert text == plain.choices[0].text


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_json_schema_response_format(client):
    resp = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    )
    assert resp.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(resp.choices[0].message.content), PERSON)


def test_json_object_response_format(client):
    resp = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Give me a JSON object."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


def test_errors_reach_the_client_as_400(client):
    with pytest.raises(openai.BadRequestError, match="tools is not supported"):
        client.chat.completions.create(
            model="m",
            messages=CHAT,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="m", messages=CHAT, max_tokens=100_000)
    with pytest.raises(openai.BadRequestError, match="echo is not supported"):
        client.completions.create(model="m", prompt="x", echo=True)
    with pytest.raises(openai.BadRequestError, match="unknown field: frobnicate"):
        client.completions.create(model="m", prompt="x", extra_body={"frobnicate": 1})
    with pytest.raises(openai.BadRequestError, match="invalid grammar"):
        client.completions.create(model="m", prompt="x", extra_body={"regex": "("}, stream=True)
    bad = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_sglang_extras(client):
    resp = client.completions.create(
        model="m",
        prompt="Pick a digit:",
        max_tokens=3,
        temperature=0,
        extra_body={"regex": "[0-9]", "top_k": 5, "min_p": 0.01, "rid": "extras-1"},
    )
    assert resp.choices[0].text.isdigit() and len(resp.choices[0].text) == 1
    assert resp.id == "cmpl-extras-1"
