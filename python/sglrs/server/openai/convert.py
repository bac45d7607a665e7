"""OpenAI requests -> SGLang /generate bodies, and SGLang's error wording -> OpenAI's fields."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sglrs.server.errors import APIError
from sglrs.server.openai.protocol import OpenAIRequest


def _body(req: OpenAIRequest, rid: str | list[str]) -> dict[str, Any]:
    sampling = dict(req.sampling)
    if req.n > 1:
        sampling["n"] = req.n
    if req.max_tokens is not None:
        sampling["max_new_tokens"] = req.max_tokens
    body: dict[str, Any] = {"sampling_params": sampling, "stream": req.stream, "rid": rid}
    if req.logprobs is not None:
        body["return_logprob"] = True
        body["top_logprobs_num"] = req.logprobs
        body["return_text_in_logprobs"] = True
    return body


def request_id(req: OpenAIRequest) -> str | list[str]:
    """The request's rid (one per prompt for a batch of completions prompts)."""
    rid = req.rid if req.rid is not None else uuid.uuid4().hex
    prompts = _num_prompts(req.prompt)
    if isinstance(rid, str) and prompts > 1:
        return [f"{rid}-{i}" for i in range(prompts)]
    return rid


def _num_prompts(prompt: Any) -> int:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        return len(prompt)
    return 1


def completion_to_generate(req: OpenAIRequest, rid: str | list[str]) -> dict[str, Any]:
    body = _body(req, rid)
    prompt = req.prompt
    if isinstance(prompt, str) or (isinstance(prompt, list) and isinstance(prompt[0], str)):
        body["text"] = prompt
    else:
        body["input_ids"] = prompt
    return body


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Render the chat template (with the assistant's turn opened) and tokenize it."""
    if tokenizer is None:
        raise APIError(
            "chat completions need a tokenizer; the server runs with --skip-tokenizer-init"
        )
    if not getattr(tokenizer, "chat_template", None):
        raise APIError(
            "the model has no chat template; start the server with --chat-template, or use "
            "/v1/completions"
        )
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # a template's own checks (e.g. role order) raise from Jinja
        raise APIError(f"messages: the chat template rejected them: {e}", param="messages") from e
    # The template writes special tokens (BOS, role markers) itself.
    return list(tokenizer.encode(text, add_special_tokens=False))


def chat_to_generate(
    req: OpenAIRequest, rid: str | list[str], input_ids: list[int], context_length: int
) -> dict[str, Any]:
    body = _body(req, rid)
    if req.max_tokens is None:
        # OpenAI's default for chat: generate until a stop or the end of the context.
        body["sampling_params"]["max_new_tokens"] = max(0, context_length - len(input_ids))
    body["input_ids"] = input_ids
    return body


_RENAMES = {
    "max_new_tokens": None,  # -> the request's own max-tokens field name
    "min_new_tokens": "min_tokens",
    "sampling_seed": "seed",
    "input_ids": "prompt",
}
_FIELD = re.compile(
    r"\b(?:sampling_params\.)?(max_new_tokens|min_new_tokens|sampling_seed|input_ids)\b"
)


def openai_message(message: str, max_tokens_field: str = "max_tokens") -> tuple[str, str | None]:
    """Reword a /generate validation message in the OpenAI field names; also return the field."""

    def rename(m: re.Match[str]) -> str:
        return _RENAMES[m.group(1)] or max_tokens_field

    text = _FIELD.sub(rename, message).replace("sampling_params.", "")
    head = re.match(r"([a-z_]+)", text)
    return text, head.group(1) if head and head.group(1) in _KNOWN_PARAMS else None


_KNOWN_PARAMS = {
    "max_tokens", "max_completion_tokens", "min_tokens", "seed", "temperature", "top_p", "top_k",
    "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "stop",
    "stop_token_ids", "logit_bias", "n", "regex", "json_schema", "ignore_eos",
    "skip_special_tokens", "no_stop_trim", "rid", "prompt", "messages",
}  # fmt: skip
