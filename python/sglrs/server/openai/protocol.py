"""OpenAI request bodies: type checks and the rules for fields sglrs does not implement.

Every field is either supported (mapped to a sampling parameter), inert (accepted because its
value asks for nothing, e.g. `echo: false`, or it has no effect on generation, e.g. `user`), or
rejected with a 400 naming it. Range checks are left to `SamplingParams`, the one authority.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sglrs.server.errors import APIError
from sglrs.serving.generate import MAX_N

MAX_TOP_LOGPROBS = 20
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def _bad(message: str, param: str | None = None) -> APIError:
    return APIError(message, 400, param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_or_str_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "number": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "str|list": (_is_str_or_str_list, "a string or a list of strings"),
    "int_list": (
        lambda v: isinstance(v, list) and all(_is_int(t) for t in v),
        "a list of integers",
    ),
    "str|object": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "any": (lambda v: True, ""),
}

# Request field -> (type, SGLang sampling parameter or None when handled separately).
_COMMON: dict[str, tuple[str, str | None]] = {
    "model": ("str", None),
    "frequency_penalty": ("number", "frequency_penalty"),
    "presence_penalty": ("number", "presence_penalty"),
    "logit_bias": ("object", "logit_bias"),
    "n": ("int", None),
    "seed": ("int", "sampling_seed"),
    "stop": ("str|list", "stop"),
    "stream": ("bool", None),
    "stream_options": ("object", None),
    "temperature": ("number", "temperature"),
    "top_p": ("number", "top_p"),
    "user": ("str", None),  # an end-user id for the provider's abuse monitoring; no effect here
    "response_format": ("object", None),
    # SGLang's extensions.
    "top_k": ("int", "top_k"),
    "min_p": ("number", "min_p"),
    "min_tokens": ("int", "min_new_tokens"),
    "regex": ("str", "regex"),
    "json_schema": ("str|object", None),
    "repetition_penalty": ("number", "repetition_penalty"),
    "stop_token_ids": ("int_list", "stop_token_ids"),
    "ignore_eos": ("bool", "ignore_eos"),
    "skip_special_tokens": ("bool", "skip_special_tokens"),
    "spaces_between_special_tokens": ("bool", "spaces_between_special_tokens"),
    "no_stop_trim": ("bool", "no_stop_trim"),
    "rid": ("str|list", None),
}
_COMPLETION: dict[str, tuple[str, str | None]] = {
    **_COMMON,
    "prompt": ("any", None),
    "max_tokens": ("int", None),
    "logprobs": ("int", None),
}
_CHAT: dict[str, tuple[str, str | None]] = {
    **_COMMON,
    "messages": ("any", None),
    "max_tokens": ("int", None),
    "max_completion_tokens": ("int", None),
    "logprobs": ("bool", None),
    "top_logprobs": ("int", None),
}


def _null_or(*allowed: Any) -> Callable[[Any], bool]:
    return lambda v: v is None or any(v == a and type(v) is type(a) for a in allowed)


# OpenAI fields sglrs does not implement -> the values that ask for nothing (accepted).
_UNSUPPORTED_COMPLETION: dict[str, Callable[[Any], bool]] = {
    "echo": _null_or(False),
    "best_of": _null_or(1),
    "suffix": _null_or(""),
}
_UNSUPPORTED_CHAT: dict[str, Callable[[Any], bool]] = {
    "tools": lambda v: v is None or v == [],
    "tool_choice": _null_or("none"),
    "functions": lambda v: v is None or v == [],
    "function_call": _null_or("none"),
    "parallel_tool_calls": lambda v: v is None or isinstance(v, bool),  # moot without tools
    "audio": _null_or(),
    "modalities": lambda v: v is None or v == ["text"],
    "prediction": _null_or(),
    "reasoning_effort": _null_or(),
    "web_search_options": _null_or(),
    "store": _null_or(False),
    "metadata": _null_or(),
    "service_tier": _null_or("auto", "default"),
    "verbosity": _null_or(),
}


@dataclass
class OpenAIRequest:
    """A validated OpenAI request, ready to become a /generate body."""

    stream: bool
    include_usage: bool
    n: int
    sampling: dict[str, Any]
    # Top-k alternatives per token when logprobs are requested, else None.
    logprobs: int | None
    rid: str | list[str] | None
    max_tokens: int | None
    max_tokens_field: str
    prompt: Any = None  # completions
    messages: list[dict[str, Any]] = field(default_factory=list)  # chat


def _check_fields(
    body: Any,
    known: dict[str, tuple[str, str | None]],
    unsupported: dict[str, Callable[[Any], bool]],
) -> dict[str, Any]:
    """Drop nulls (OpenAI: the default) and return the remaining, type-checked fields."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in unsupported:
            if not unsupported[key](value):
                raise _bad(f"{key} is not supported by sglrs", param=key)
            continue
        if key not in known:
            raise _bad(f"unknown field: {key}", param=key)
        if value is None:
            continue
        check, what = _CHECKS[known[key][0]]
        if not check(value):
            raise _bad(f"{key} must be {what}, got {json.dumps(value)[:80]}", param=key)
        out[key] = value
    return out


def _common(fields: dict[str, Any], known: dict[str, tuple[str, str | None]]) -> OpenAIRequest:
    sampling = {known[k][1]: v for k, v in fields.items() if known[k][1] is not None}
    n = fields.get("n", 1)
    if not 1 <= n <= MAX_N:
        raise _bad(f"n must be in [1, {MAX_N}], got {n}", param="n")
    stream = fields.get("stream", False)
    options = fields.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _bad("stream_options is only allowed when stream is true", "stream_options")
        for key, value in options.items():
            if key != "include_usage":
                raise _bad(f"unknown field: stream_options.{key}", param="stream_options")
            if value is not None and not isinstance(value, bool):
                raise _bad("stream_options.include_usage must be a boolean", "stream_options")
        include_usage = bool(options.get("include_usage"))
    schema = _structured_output(fields)
    if schema is not None:
        if "regex" in sampling:
            raise _bad("at most one of regex, json_schema and response_format may be set")
        sampling["json_schema"] = schema
    rid = fields.get("rid")
    return OpenAIRequest(
        stream=stream,
        include_usage=include_usage,
        n=n,
        sampling=sampling,
        logprobs=None,
        rid=rid,
        max_tokens=None,
        max_tokens_field="max_tokens",
    )


def _structured_output(fields: dict[str, Any]) -> str | None:
    """`response_format` or SGLang's `json_schema` -> the JSON schema as a string, or None."""
    extra = fields.get("json_schema")
    fmt = fields.get("response_format")
    schema = None
    if fmt is not None:
        kind = fmt.get("type")
        unknown = set(fmt) - {"type", "json_schema"}
        if unknown:
            raise _bad(f"unknown field: response_format.{sorted(unknown)[0]}", "response_format")
        if kind == "json_object":
            schema = json.dumps({"type": "object"})
        elif kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise _bad(
                    "response_format.json_schema.schema must be an object (the JSON schema)",
                    "response_format",
                )
            bad = set(spec) - {"name", "schema", "strict", "description"}
            if bad:
                raise _bad(
                    f"unknown field: response_format.json_schema.{sorted(bad)[0]}",
                    "response_format",
                )
            schema = json.dumps(spec["schema"])
        elif kind != "text":
            raise _bad(
                "response_format.type must be one of text, json_object, json_schema",
                "response_format",
            )
    if extra is not None:
        if schema is not None:
            raise _bad("at most one of json_schema and response_format may be set")
        schema = extra if isinstance(extra, str) else json.dumps(extra)
    if schema is not None:
        try:
            json.loads(schema)
        except ValueError as e:
            raise _bad(f"json_schema is not valid JSON: {e}", param="json_schema") from e
    return schema


def parse_completion_request(body: Any) -> OpenAIRequest:
    fields = _check_fields(body, _COMPLETION, _UNSUPPORTED_COMPLETION)
    req = _common(fields, _COMPLETION)
    if "prompt" not in fields:
        raise _bad("prompt is required", param="prompt")
    req.prompt = _check_prompt(fields["prompt"])
    req.max_tokens = fields.get("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    if "logprobs" in fields:
        k = fields["logprobs"]
        if not 0 <= k <= MAX_TOP_LOGPROBS:
            raise _bad(f"logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {k}", "logprobs")
        req.logprobs = k
    return req


def _check_prompt(prompt: Any) -> Any:
    """str | list[str] | list[int] | list[list[int]], non-empty."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return prompt
        if all(_is_int(t) for t in prompt):
            return prompt
        if all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt):
            return prompt
    raise _bad(
        "prompt must be a string, a list of strings, a list of token ids or a list of such lists",
        param="prompt",
    )


def parse_chat_request(body: Any) -> OpenAIRequest:
    fields = _check_fields(body, _CHAT, _UNSUPPORTED_CHAT)
    req = _common(fields, _CHAT)
    if "messages" not in fields:
        raise _bad("messages is required", param="messages")
    req.messages = _check_messages(fields["messages"])
    max_tokens = fields.get("max_tokens")
    max_completion = fields.get("max_completion_tokens")
    if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
        raise _bad("max_tokens and max_completion_tokens disagree", "max_completion_tokens")
    if max_completion is not None:
        req.max_tokens, req.max_tokens_field = max_completion, "max_completion_tokens"
    else:
        req.max_tokens = max_tokens  # None: up to the context length
    top = fields.get("top_logprobs")
    if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
        raise _bad(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {top}", "top_logprobs")
    if fields.get("logprobs"):
        req.logprobs = top or 0
    elif top:
        raise _bad("top_logprobs requires logprobs to be true", param="top_logprobs")
    return req


_ROLES = {"system", "user", "assistant", "developer"}


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    """Validate chat messages; content parts are joined into one string per message."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object", param="messages")
        role = m.get("role")
        if role in ("tool", "function"):
            raise _bad(f"{where}: {role} messages are not supported by sglrs", "messages")
        if role not in _ROLES:
            raise _bad(f"{where}.role must be one of {sorted(_ROLES)}", param="messages")
        for key, value in m.items():
            if key in ("role", "content", "name"):
                continue
            if key in ("tool_calls", "function_call", "audio", "refusal") and value is None:
                continue
            if key in ("tool_calls", "function_call", "tool_call_id", "audio"):
                raise _bad(f"{where}.{key} is not supported by sglrs", param="messages")
            raise _bad(f"unknown field: {where}.{key}", param="messages")
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            raise _bad(f"{where}.name must be a string", param="messages")
        message: dict[str, Any] = {
            # The developer role is OpenAI's newer name for system instructions.
            "role": "system" if role == "developer" else role,
            "content": _content(m.get("content"), where),
        }
        if name is not None:
            message["name"] = name
        out.append(message)
    return out


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of parts", "messages")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"{where}.content[{j}] must be an object", param="messages")
        kind = part.get("type")
        if kind != "text":
            raise _bad(
                f"{where}.content[{j}].type {kind!r} is not supported by sglrs (text only)",
                param="messages",
            )
        if not isinstance(part.get("text"), str) or set(part) - {"type", "text"}:
            raise _bad(f"{where}.content[{j}] must be {{type: text, text: <string>}}", "messages")
        texts.append(part["text"])
    return "\n".join(texts)
