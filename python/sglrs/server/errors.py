"""Error bodies and the exceptions the routes raise.

Two shapes: OpenAI's on `/v1/*` (what the `openai` client parses) and SGLang's native
`{"error": {...}}` elsewhere. Client errors never leave as a traceback; internal errors are a
500 with a JSON body.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

_OPENAI_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
_NATIVE_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "method_not_allowed",
    500: "internal_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answered with `status` and a JSON body; `param` names the offending field."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; its work was cancelled."""


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/")


def openai_error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    return {
        "object": "error",
        "message": message,
        "type": _OPENAI_TYPES.get(status, "APIError"),
        "param": param,
        "code": status,
    }


def native_error_body(message: str, status: int) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _NATIVE_TYPES.get(status, "error"),
            "code": status,
        }
    }


def error_body(path: str, message: str, status: int, param: str | None = None) -> dict[str, Any]:
    if is_openai_path(path):
        return openai_error_body(message, status, param)
    return native_error_body(message, status)


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """JSON via msgspec: fast, and non-finite floats (e.g. -inf logprobs) become null."""
    return Response(
        msgspec.json.encode(content),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(
    path: str,
    message: str,
    status: int,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return json_response(error_body(path, message, status, param), status, headers)
