"""Bad input: a 400 in the path's error shape naming the field; nothing reaches the scheduler."""

from __future__ import annotations

import pytest

from sglrs.ipc import messages as msg

OPENAI_KEYS = {"object", "message", "type", "param", "code"}


def native_error(resp, status=400):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == status
    assert body["error"]["type"]
    return body["error"]["message"]


def openai_error(resp, status=400):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == OPENAI_KEYS
    assert body["object"] == "error" and body["code"] == status
    if status == 400:
        assert body["type"] == "BadRequestError"
    return body


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"text": "hi", "foo": 1}, "unknown field: foo"),
        ({"text": "hi", "image_data": "x"}, "image_data is not supported"),
        ({"text": "hi", "sampling_params": {"bogus": 1}}, "sampling_params.bogus"),
        ({"text": "hi", "sampling_params": {"temperature": -1}}, "sampling_params.temperature"),
        ({"text": "hi", "sampling_params": {"top_p": "x"}}, "sampling_params.top_p"),
        ({"text": "hi", "sampling_params": {"n": 65}}, "sampling_params.n"),
        ({"text": "hi", "sampling_params": {"max_new_tokens": 1000}}, "max_new_tokens"),
        ({"text": "hi", "sampling_params": {"stop_token_ids": [10**6]}}, "stop_token_ids"),
        ({"text": "Hello world " * 300}, "context length"),
        ({"input_ids": [1, 2, 99999]}, "input_ids"),
        ({"text": 5}, "text"),
        ({}, "exactly one of text or input_ids"),
        ({"text": "hi", "stream": "yes"}, "stream"),
        ({"text": "hi", "return_logprob": True, "logprob_start_len": 50}, "logprob_start_len"),
        ([1, 2], "JSON object"),
    ],
)
def test_generate_rejects(client, body, needle):
    http, engine = client
    message = native_error(http.post("/generate", json=body))
    assert needle in message
    assert not engine.tm.sent_of(msg.GenerateReq)


def test_generate_stream_validation_is_still_a_400(client):
    http, engine = client
    resp = http.post("/generate", json={"text": "hi", "stream": True, "sampling_params": {"x": 1}})
    assert "sampling_params.x" in native_error(resp)
    assert not engine.tm.sent_of(msg.GenerateReq)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"   ", b'{"text": "hi",}'])
def test_malformed_json(client, raw):
    http, _ = client
    message = native_error(http.post("/generate", content=raw))
    assert "JSON" in message
    body = openai_error(http.post("/v1/completions", content=raw))
    assert "JSON" in body["message"]


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"prompt": "hi", "foo": 1}, "foo", "unknown field: foo"),
        ({"prompt": "hi", "echo": True}, "echo", "echo is not supported"),
        ({"prompt": "hi", "best_of": 2}, "best_of", "best_of is not supported"),
        ({"prompt": "hi", "suffix": "x"}, "suffix", "suffix is not supported"),
        ({"prompt": "hi", "temperature": "hot"}, "temperature", "temperature must be a number"),
        ({"prompt": "hi", "temperature": -1}, "temperature", "temperature"),
        ({"prompt": "hi", "max_tokens": 1000}, "max_tokens", "max_tokens"),
        ({"prompt": "hi", "min_tokens": 9, "max_tokens": 4}, "min_tokens", "min_tokens"),
        ({"prompt": "hi", "n": 0}, "n", "n must be in"),
        ({"prompt": "hi", "logprobs": 50}, "logprobs", "logprobs"),
        ({"prompt": [], "max_tokens": 1}, "prompt", "prompt must be"),
        ({"max_tokens": 1}, "prompt", "prompt is required"),
        ({"prompt": "hi", "stream_options": {"include_usage": True}}, "stream_options", "stream"),
        ({"prompt": "hi", "json_schema": "{nope"}, "json_schema", "not valid JSON"),
        ({"prompt": [1, 2, 99999]}, "prompt", "outside the vocabulary"),
    ],
)
def test_completions_reject(client, body, param, needle):
    http, engine = client
    err = openai_error(http.post("/v1/completions", json=body))
    assert needle in err["message"]
    assert "max_new_tokens" not in err["message"] and "sampling_params" not in err["message"]
    assert err["param"] == param
    assert not engine.tm.sent_of(msg.GenerateReq)


CHAT = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": CHAT, "tools": [{"type": "function"}]}, "tools is not supported"),
        ({"messages": CHAT, "tool_choice": "auto"}, "tool_choice is not supported"),
        ({"messages": CHAT, "functions": [{"name": "f"}]}, "functions is not supported"),
        ({"messages": CHAT, "logprobs": "yes"}, "logprobs must be a boolean"),
        ({"messages": CHAT, "top_logprobs": 3}, "top_logprobs requires logprobs"),
        ({"messages": CHAT, "max_completion_tokens": 1000}, "max_completion_tokens"),
        ({"messages": CHAT, "max_tokens": 1000}, "max_tokens"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool messages are not supported"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": []}, "messages must be a non-empty list"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "'image_url' is not supported",
        ),
        ({"messages": CHAT, "response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": [{"role": "user", "content": "hi " * 300}]}, "context length"),
    ],
)
def test_chat_rejects(client, body, needle):
    http, engine = client
    err = openai_error(http.post("/v1/chat/completions", json=body))
    assert needle in err["message"]
    assert not engine.tm.sent_of(msg.GenerateReq)


def test_chat_without_template_is_a_clear_400(make_client, tokenizer):
    import copy

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    http, _ = make_client(tokenizer_override=plain)
    err = openai_error(http.post("/v1/chat/completions", json={"messages": CHAT}))
    assert "chat template" in err["message"]


def test_openai_api_needs_a_tokenizer(make_client):
    http, _ = make_client(tokenizer_override=None, skip_tokenizer_init=True)
    err = openai_error(http.post("/v1/completions", json={"prompt": [1, 2]}))
    assert "--skip-tokenizer-init" in err["message"]
    message = native_error(http.post("/generate", json={"text": "hi"}))
    assert "input_ids" in message


def test_unknown_routes_and_methods_are_json(client):
    http, _ = client
    assert openai_error(http.get("/v1/nope"), 404)["type"] == "NotFoundError"
    native_error(http.get("/nope"), 404)
    native_error(http.get("/generate"), 405)
    openai_error(http.get("/v1/completions"), 405)


def test_server_stays_up_after_bad_requests(client):
    http, _ = client
    for _ in range(3):
        http.post("/generate", content=b"{")
        http.post("/v1/chat/completions", json={"messages": "x"})
    assert http.get("/health").status_code == 200


def test_internal_error_is_a_json_500_without_traceback(client):
    http, engine = client

    def broken(req):
        raise KeyError("internal detail")

    engine.tm.prepare = broken
    resp = http.post("/generate", json={"text": "hi"})
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert error["code"] == 500 and "KeyError" in error["message"]
    assert "Traceback" not in resp.text
    resp = http.post("/v1/completions", json={"prompt": "hi"})
    assert resp.status_code == 500 and resp.json()["type"] == "InternalServerError"
    assert http.get("/health").status_code == 200
