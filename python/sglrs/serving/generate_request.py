"""SGLang's `/generate` request body, parsed and validated into one object per prompt.

A body holds one prompt or a batch (`text` / `input_ids` as a list); every per-prompt field may
be a scalar (shared) or a list (one per prompt). Unknown fields and fields SGLang has but sglrs
does not implement are errors naming the field: nothing is silently ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

# Fields of SGLang's GenerateReqInput that sglrs accepts.
_SUPPORTED = {
    "text",
    "input_ids",
    "sampling_params",
    "rid",
    "stream",
    "return_logprob",
    "logprob_start_len",
    "top_logprobs_num",
    "return_text_in_logprobs",
    "priority",
}
# Fields SGLang has that sglrs rejects with a clear message (never ignores).
_NOT_SUPPORTED = {
    "input_embeds",
    "image_data",
    "video_data",
    "audio_data",
    "lora_path",
    "session_params",
    "custom_logit_processor",
    "return_hidden_states",
    "token_ids_logprob",
    "routing_key",
    "routed_dp_rank",
    "data_parallel_rank",
    "extra_key",
    "cache_salt",
    "bootstrap_host",
    "bootstrap_port",
    "bootstrap_room",
}


class RequestError(ValueError):
    """A client error: the HTTP layer answers 400 with this message."""


@dataclass
class SingleRequest:
    """One prompt of a /generate body (before `n` expansion)."""

    rid: str
    text: str | None
    input_ids: list[int] | None
    sampling_params: dict[str, Any]
    stream: bool = False
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    return_text_in_logprobs: bool = False
    priority: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedGenerate:
    requests: list[SingleRequest]
    is_batch: bool
    stream: bool


def parse_generate_body(body: Any) -> ParsedGenerate:
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    for key in body:
        if key in _NOT_SUPPORTED:
            raise RequestError(f"{key} is not supported by sglrs")
        if key not in _SUPPORTED:
            raise RequestError(f"unknown field: {key}")
    has_text = body.get("text") is not None
    has_ids = body.get("input_ids") is not None
    if has_text == has_ids:
        raise RequestError("exactly one of text or input_ids must be given")
    prompts, is_batch = _prompts(body["text"] if has_text else body["input_ids"], has_text)
    n = len(prompts)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be a boolean")

    def per_prompt(name: str, default: Any, kind: type | tuple[type, ...]) -> list[Any]:
        value = body.get(name)
        if value is None:
            return [default] * n
        values = value if isinstance(value, list) and is_batch else [value] * n
        if len(values) != n:
            raise RequestError(f"{name} has {len(values)} entries for {n} prompts")
        for v in values:
            if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
                raise RequestError(f"{name} has the wrong type: {type(v).__name__}")
        return values

    sampling = per_prompt("sampling_params", {}, dict)
    rids = per_prompt("rid", None, str)
    return_logprob = per_prompt("return_logprob", False, bool)
    start_len = per_prompt("logprob_start_len", -1, int)
    top_num = per_prompt("top_logprobs_num", 0, int)
    text_in_lp = per_prompt("return_text_in_logprobs", False, bool)
    priority = per_prompt("priority", 0, int)
    requests = []
    for i, prompt in enumerate(prompts):
        if top_num[i] < 0:
            raise RequestError("top_logprobs_num must be >= 0")
        if start_len[i] < -1:
            raise RequestError("logprob_start_len must be >= -1")
        requests.append(
            SingleRequest(
                rid=rids[i] or uuid.uuid4().hex,
                text=prompt if has_text else None,
                input_ids=None if has_text else prompt,
                sampling_params=dict(sampling[i]),
                stream=stream,
                return_logprob=return_logprob[i],
                logprob_start_len=start_len[i],
                top_logprobs_num=top_num[i],
                return_text_in_logprobs=text_in_lp[i],
                priority=priority[i],
            )
        )
    if len({r.rid for r in requests}) != len(requests):
        raise RequestError("rid values must be unique within a batch")
    return ParsedGenerate(requests=requests, is_batch=is_batch, stream=stream)


def _prompts(value: Any, is_text: bool) -> tuple[list[Any], bool]:
    if is_text:
        if isinstance(value, str):
            return [value], False
        if isinstance(value, list) and value and all(isinstance(t, str) for t in value):
            return list(value), True
        raise RequestError("text must be a string or a non-empty list of strings")
    if isinstance(value, list) and value and all(_is_int(t) for t in value):
        return [list(value)], False
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in value)
    ):
        return [list(p) for p in value], True
    raise RequestError("input_ids must be a non-empty list of token ids or a list of such lists")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
