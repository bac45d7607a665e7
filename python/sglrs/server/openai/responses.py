"""SGLang-shaped outputs -> OpenAI responses and streamed chunks.

Outputs arrive cumulative (text and logprobs so far); streamed chunks carry deltas, so the
formatter remembers, per choice, how much it has already sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglrs.server.openai.protocol import OpenAIRequest


def finish_reason(meta: dict[str, Any]) -> str | None:
    reason = meta.get("finish_reason")
    return None if reason is None else str(reason.get("type"))


def _matched_stop(meta: dict[str, Any]) -> Any:
    reason = meta.get("finish_reason") or {}
    return reason.get("matched")


def _token_text(entry: list[Any]) -> str:
    return entry[2] if entry[2] is not None else ""


def completion_logprobs(
    meta: dict[str, Any], start: int, top_k: int, offset: int
) -> tuple[dict[str, Any], int]:
    """The legacy completions logprobs object for output tokens [start:]; returns new offset."""
    entries = meta.get("output_token_logprobs", [])[start:]
    tops = meta.get("output_top_logprobs", [])[start:] if top_k > 0 else []
    tokens, offsets = [], []
    for entry in entries:
        tokens.append(_token_text(entry))
        offsets.append(offset)
        offset += len(tokens[-1])
    top_logprobs = (
        [{_token_text(t): t[0] for t in top or []} for top in tops] if top_k > 0 else None
    )
    result = {
        "tokens": tokens,
        "token_logprobs": [e[0] for e in entries],
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }
    return result, offset


def _chat_token(entry: list[Any]) -> dict[str, Any]:
    text = _token_text(entry)
    return {"token": text, "logprob": entry[0], "bytes": list(text.encode("utf-8"))}


def chat_logprobs(meta: dict[str, Any], start: int, top_k: int) -> dict[str, Any]:
    entries = meta.get("output_token_logprobs", [])[start:]
    tops = meta.get("output_top_logprobs", [])[start:] if top_k > 0 else []
    content = []
    for i, entry in enumerate(entries):
        item = _chat_token(entry)
        top = tops[i] if i < len(tops) and tops[i] else []
        item["top_logprobs"] = [_chat_token(t) for t in top]
        content.append(item)
    return {"content": content, "refusal": None}


def usage(finals: list[dict[str, Any]], n: int, cache_report: bool) -> dict[str, Any]:
    """Token counts; outputs are ordered prompt-major, so each prompt counts once per n."""
    metas = [f["meta_info"] for f in finals]
    prompt = sum(m["prompt_tokens"] for m in metas[::n])
    completion = sum(m["completion_tokens"] for m in metas)
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_report:
        cached = sum(m.get("cached_tokens", 0) for m in metas)
        result["prompt_tokens_details"] = {"cached_tokens": cached}
    return result


@dataclass
class ResponseInfo:
    """What every response and chunk of one request repeats."""

    id: str
    model: str
    created: int
    cache_report: bool


def completion_response(
    outputs: list[dict[str, Any]], req: OpenAIRequest, info: ResponseInfo
) -> dict[str, Any]:
    choices = []
    for index, out in enumerate(outputs):
        meta = out["meta_info"]
        logprobs = None
        if req.logprobs is not None:
            logprobs, _ = completion_logprobs(meta, 0, req.logprobs, 0)
        choices.append(
            {
                "index": index,
                "text": out.get("text", ""),
                "logprobs": logprobs,
                "finish_reason": finish_reason(meta),
                "matched_stop": _matched_stop(meta),
            }
        )
    return {
        "id": info.id,
        "object": "text_completion",
        "created": info.created,
        "model": info.model,
        "choices": choices,
        "usage": usage(outputs, req.n, info.cache_report),
    }


def chat_response(
    outputs: list[dict[str, Any]], req: OpenAIRequest, info: ResponseInfo
) -> dict[str, Any]:
    choices = []
    for index, out in enumerate(outputs):
        meta = out["meta_info"]
        logprobs = chat_logprobs(meta, 0, req.logprobs) if req.logprobs is not None else None
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": out.get("text", "")},
                "logprobs": logprobs,
                "finish_reason": finish_reason(meta),
                "matched_stop": _matched_stop(meta),
            }
        )
    return {
        "id": info.id,
        "object": "chat.completion",
        "created": info.created,
        "model": info.model,
        "choices": choices,
        "usage": usage(outputs, req.n, info.cache_report),
    }


@dataclass
class _Sent:
    """How much of one choice has been streamed."""

    text: int = 0
    logprobs: int = 0
    offset: int = 0
    started: bool = False
    final: dict[str, Any] | None = None


class StreamFormatter:
    """Turns cumulative outputs (with `index` when there are several) into OpenAI chunks."""

    def __init__(self, chat: bool, req: OpenAIRequest, info: ResponseInfo, choices: int) -> None:
        self.chat = chat
        self.req = req
        self.info = info
        self.sent = [_Sent() for _ in range(choices)]

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk = {
            "id": self.info.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.info.created,
            "model": self.info.model,
            "choices": [choice],
        }
        if self.req.include_usage:
            chunk["usage"] = None
        return chunk

    def chunks(self, out: dict[str, Any]) -> list[dict[str, Any]]:
        index = out.get("index", 0)
        sent = self.sent[index]
        meta = out["meta_info"]
        text = out.get("text", "")
        delta, sent.text = text[sent.text :], len(text)
        reason = finish_reason(meta)
        if reason is not None:
            sent.final = out
        result = []
        if self.chat and not sent.started:
            # OpenAI opens every choice with the role.
            result.append(
                self._chunk(
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
            )
        sent.started = True
        n_logprobs = len(meta.get("output_token_logprobs", []))
        if not delta and reason is None and n_logprobs == sent.logprobs:
            return result
        logprobs = None
        if self.req.logprobs is not None:
            if self.chat:
                logprobs = chat_logprobs(meta, sent.logprobs, self.req.logprobs)
            else:
                logprobs, sent.offset = completion_logprobs(
                    meta, sent.logprobs, self.req.logprobs, sent.offset
                )
            sent.logprobs = n_logprobs
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            choice["delta"] = {"content": delta} if delta or reason is None else {}
        else:
            choice["text"] = delta
        choice["logprobs"] = logprobs
        choice["finish_reason"] = reason
        if reason is not None:
            choice["matched_stop"] = _matched_stop(meta)
        result.append(self._chunk(choice))
        return result

    def usage_chunk(self) -> dict[str, Any] | None:
        """The final chunk with the usage of every choice (when stream_options asks for it)."""
        if not self.req.include_usage:
            return None
        finals = [s.final for s in self.sent if s.final is not None]
        return {
            "id": self.info.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.info.created,
            "model": self.info.model,
            "choices": [],
            "usage": usage(finals, self.req.n, self.info.cache_report),
        }
