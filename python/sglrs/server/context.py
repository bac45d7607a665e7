"""What every route needs: the server's state, JSON bodies, and one error policy."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sglrs.server.errors import APIError, ClientDisconnected, error_response
from sglrs.server.metrics import PrometheusMetrics
from sglrs.server_args import ServerArgs
from sglrs.serving.generate_request import RequestError
from sglrs.serving.tokenizer_manager import TokenizerManager

logger = logging.getLogger(__name__)

# nginx's "client closed request"; nobody reads it, but access logs show what happened.
CLIENT_CLOSED = 499


@dataclass
class ServerContext:
    args: ServerArgs
    engine: Any  # sglrs.engine.runtime.Runtime, or anything with its interface
    metrics: PrometheusMetrics | None
    tm: TokenizerManager | None = None
    model_info: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def served_model_name(self) -> str:
        return str(
            self.args.served_model_name
            or self.model_info.get("served_model_name")
            or self.args.model_path
        )

    @property
    def tokenizer_manager(self) -> TokenizerManager:
        if self.tm is None:
            raise APIError("the engine is not running", 503)
        return self.tm

    def healthy(self) -> bool:
        return self.tm is not None and self.tm.healthy and self.engine.processes_alive()


def server_context(request: Request) -> ServerContext:
    return request.app.state.ctx


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise APIError("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise APIError(f"malformed JSON: {e}") from e


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Map exceptions to JSON errors: client errors 400, engine failure 503, bugs 500."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        path = request.url.path
        try:
            return await handler(request)
        except APIError as e:
            return error_response(path, e.message, e.status, e.param)
        except RequestError as e:
            return error_response(path, str(e), 400)
        except ClientDisconnected:
            return Response(status_code=CLIENT_CLOSED)
        except Exception as e:
            return internal_error(request, e)

    return wrapped


def describe_failure(ctx: ServerContext, path: str, e: BaseException) -> tuple[str, int]:
    """(message, status) for an unexpected exception: 503 if the engine died, else a 500."""
    if ctx.tm is not None and not ctx.tm.healthy:
        return f"the engine failed: {ctx.tm.fatal_error}", 503
    logger.error("internal error on %s", path, exc_info=e)
    return f"internal server error: {type(e).__name__}: {e}", 500


def internal_error(request: Request, e: BaseException) -> Response:
    path = request.url.path
    message, status = describe_failure(server_context(request), path, e)
    return error_response(path, message, status)
