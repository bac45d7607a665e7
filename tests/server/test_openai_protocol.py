"""OpenAI request validation and conversion to SGLang /generate bodies."""

from __future__ import annotations

import json

import pytest

from sglrs.server.errors import APIError
from sglrs.server.openai.convert import (
    chat_prompt_ids,
    chat_to_generate,
    completion_to_generate,
    openai_message,
    request_id,
)
from sglrs.server.openai.protocol import parse_chat_request, parse_completion_request
from sglrs.serving.generate_request import parse_generate_body

CHAT = [{"role": "user", "content": "hi"}]


def test_completion_maps_every_sampling_field():
    req = parse_completion_request(
        {
            "model": "m",
            "prompt": "Hello",
            "max_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.9,
            "seed": 3,
            "stop": ["\n"],
            "n": 2,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
            "logit_bias": {"5": -100},
            "logprobs": 2,
            "top_k": 5,
            "min_p": 0.05,
            "min_tokens": 1,
            "repetition_penalty": 1.1,
            "stop_token_ids": [3],
            "ignore_eos": True,
            "skip_special_tokens": False,
            "no_stop_trim": True,
            "rid": "abc",
            "user": "someone",
        }
    )
    body = completion_to_generate(req, "abc")
    assert body["text"] == "Hello"
    assert body["rid"] == "abc"
    assert body["return_logprob"] is True and body["top_logprobs_num"] == 2
    assert body["return_text_in_logprobs"] is True
    assert body["sampling_params"] == {
        "max_new_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "sampling_seed": 3,
        "stop": ["\n"],
        "n": 2,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"5": -100},
        "top_k": 5,
        "min_p": 0.05,
        "min_new_tokens": 1,
        "repetition_penalty": 1.1,
        "stop_token_ids": [3],
        "ignore_eos": True,
        "skip_special_tokens": False,
        "no_stop_trim": True,
    }
    parsed = parse_generate_body(body)  # the /generate parser accepts what we build
    assert parsed.requests[0].sampling_params["n"] == 2


def test_completion_defaults_and_prompt_forms():
    req = parse_completion_request({"prompt": "x", "stream": False, "echo": False, "best_of": 1})
    assert req.max_tokens == 16 and req.n == 1 and req.logprobs is None and not req.stream
    assert completion_to_generate(req, "r")["sampling_params"] == {"max_new_tokens": 16}
    for prompt, key in [(["a", "b"], "text"), ([1, 2], "input_ids"), ([[1], [2, 3]], "input_ids")]:
        req = parse_completion_request({"prompt": prompt})
        assert completion_to_generate(req, "r")[key] == prompt


def test_nulls_mean_default():
    req = parse_completion_request({"prompt": "x", "temperature": None, "stop": None, "n": None})
    assert completion_to_generate(req, "r")["sampling_params"] == {"max_new_tokens": 16}


@pytest.mark.parametrize(
    ("fmt", "schema"),
    [
        ({"type": "json_object"}, {"type": "object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "integer"}}},
            {"type": "integer"},
        ),
    ],
)
def test_response_format_becomes_json_schema(fmt, schema):
    req = parse_chat_request({"messages": CHAT, "response_format": fmt})
    assert json.loads(req.sampling["json_schema"]) == schema
    assert "json_schema" not in parse_chat_request({"messages": CHAT}).sampling
    text = parse_chat_request({"messages": CHAT, "response_format": {"type": "text"}})
    assert "json_schema" not in text.sampling


def test_sglang_json_schema_extra_accepts_string_or_object():
    a = parse_completion_request({"prompt": "x", "json_schema": {"type": "string"}})
    b = parse_completion_request({"prompt": "x", "json_schema": '{"type": "string"}'})
    assert json.loads(a.sampling["json_schema"]) == json.loads(b.sampling["json_schema"])


@pytest.mark.parametrize(
    "body",
    [
        {"messages": CHAT, "regex": "a+", "response_format": {"type": "json_object"}},
        {"messages": CHAT, "json_schema": "{}", "response_format": {"type": "json_object"}},
        {"messages": CHAT, "response_format": {"type": "json_schema", "json_schema": {}}},
        {"messages": CHAT, "response_format": {"type": "json_object", "extra": 1}},
    ],
)
def test_structured_output_conflicts(body):
    with pytest.raises(APIError):
        parse_chat_request(body)


def test_chat_logprobs_and_max_tokens():
    req = parse_chat_request({"messages": CHAT, "logprobs": True, "top_logprobs": 3})
    assert req.logprobs == 3
    assert parse_chat_request({"messages": CHAT, "logprobs": True}).logprobs == 0
    assert parse_chat_request({"messages": CHAT, "logprobs": False}).logprobs is None
    req = parse_chat_request({"messages": CHAT, "max_completion_tokens": 5})
    assert (req.max_tokens, req.max_tokens_field) == (5, "max_completion_tokens")
    with pytest.raises(APIError, match="disagree"):
        parse_chat_request({"messages": CHAT, "max_tokens": 4, "max_completion_tokens": 5})


def test_chat_inert_unsupported_fields_are_accepted():
    parse_chat_request(
        {
            "messages": CHAT,
            "tools": [],
            "tool_choice": "none",
            "parallel_tool_calls": True,
            "store": False,
            "service_tier": "auto",
            "modalities": ["text"],
            "stream": False,
            "user": "u",
        }
    )


def test_chat_stream_options():
    req = parse_chat_request(
        {"messages": CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert req.stream and req.include_usage
    with pytest.raises(APIError, match="stream_options.bogus"):
        parse_chat_request({"messages": CHAT, "stream": True, "stream_options": {"bogus": 1}})


def test_messages_normalized():
    req = parse_chat_request(
        {
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": "ok", "tool_calls": None, "name": "bot"},
            ]
        }
    )
    assert req.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "ok", "name": "bot"},
    ]
    with pytest.raises(APIError, match=r"messages\[0\].tool_calls is not supported"):
        parse_chat_request({"messages": [{"role": "assistant", "tool_calls": [{}]}]})


def test_chat_prompt_and_default_max_tokens(tokenizer):
    req = parse_chat_request({"messages": CHAT})
    ids = chat_prompt_ids(tokenizer, req.messages)
    text = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert ids == tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    body = chat_to_generate(req, "r", ids, context_length=100)
    assert body["input_ids"] == ids
    assert body["sampling_params"]["max_new_tokens"] == 100 - len(ids)
    req = parse_chat_request({"messages": CHAT, "max_tokens": 3})
    assert chat_to_generate(req, "r", ids, 100)["sampling_params"]["max_new_tokens"] == 3


_RENAMED = [
    # (SGLang wording, the request's max-tokens field, OpenAI wording, param)
    (
        "sampling_params.max_new_tokens must be >= 0, got -1",
        "max_tokens",
        "max_tokens must be >= 0, got -1",
        "max_tokens",
    ),
    (
        "max_new_tokens: 5 prompt tokens + 9 new tokens",
        "max_completion_tokens",
        "max_completion_tokens: 5 prompt tokens + 9 new tokens",
        "max_completion_tokens",
    ),
    (
        "sampling_params.min_new_tokens must be in [0, max_new_tokens=4], got 9",
        "max_tokens",
        "min_tokens must be in [0, max_tokens=4], got 9",
        "min_tokens",
    ),
    (
        "sampling_params.sampling_seed must be an integer",
        "max_tokens",
        "seed must be an integer",
        "seed",
    ),
    ("sampling_params.top_p must be in (0, 1]", "max_tokens", "top_p must be in (0, 1]", "top_p"),
    (
        "the prompt has 9 tokens; the context is 8",
        "max_tokens",
        "the prompt has 9 tokens; the context is 8",
        None,
    ),
]


@pytest.mark.parametrize(("message", "field", "expected", "param"), _RENAMED)
def test_openai_message_uses_openai_field_names(message, field, expected, param):
    assert openai_message(message, field) == (expected, param)


def test_batch_prompts_get_one_rid_each():
    req = parse_completion_request({"prompt": ["a", "b"], "rid": "x"})
    assert request_id(req) == ["x-0", "x-1"]
    assert parse_generate_body(completion_to_generate(req, request_id(req))).is_batch
    generated = request_id(parse_completion_request({"prompt": [[1], [2], [3]]}))
    assert len(set(generated)) == 3
    assert request_id(parse_completion_request({"prompt": "a", "rid": "y"})) == "y"
    assert request_id(parse_completion_request({"prompt": [1, 2], "rid": "y"})) == "y"
