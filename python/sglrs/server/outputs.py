"""Checks on SGLang-shaped outputs shared by the native and the OpenAI routes."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from sglrs.serving.generate_request import RequestError


def raise_if_rejected(output: dict[str, Any]) -> None:
    """A request the scheduler refused as a client error (e.g. an invalid regex) is a 400.

    The scheduler reports it as `finish_reason = {"type": "abort", "status_code": 400,
    "message": ...}`, as SGLang does.
    """
    reason = output.get("meta_info", {}).get("finish_reason")
    if isinstance(reason, dict) and reason.get("type") == "abort":
        if reason.get("status_code") == 400:
            raise RequestError(str(reason.get("message") or "the request was rejected"))


async def first_output(stream: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any] | None:
    """The first chunk of a stream (None if empty); the stream is closed if it fails."""
    try:
        out = await stream.__anext__()
    except StopAsyncIteration:
        return None
    except BaseException:
        await stream.aclose()
        raise
    try:
        raise_if_rejected(out)
    except RequestError:
        await stream.aclose()
        raise
    return out
