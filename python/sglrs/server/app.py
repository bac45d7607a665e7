"""The Starlette application: routes, API key, error shapes, and the engine's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from sglrs.server.auth import APIKeyMiddleware
from sglrs.server.context import ServerContext, internal_error
from sglrs.server.errors import error_response
from sglrs.server.metrics import PrometheusMetrics
from sglrs.server.native import native_routes
from sglrs.server.openai.routes import openai_routes
from sglrs.server_args import ServerArgs

logger = logging.getLogger(__name__)

STOP_POLL_S = 0.2


class StartupInterrupted(RuntimeError):
    """Shutdown was requested while the model was still loading."""


def create_app(
    args: ServerArgs, engine: Any, should_stop: Callable[[], bool] = lambda: False
) -> Starlette:
    """The app for `engine` (a Runtime whose processes are started; attached at startup).

    `should_stop` lets the launcher interrupt a long model load (Ctrl-C during startup).
    """
    name = args.served_model_name or str(args.model_path)
    metrics = PrometheusMetrics(name) if args.enable_metrics else None
    ctx = ServerContext(args=args, engine=engine, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            ctx.tm = await _attach(engine, metrics, should_stop)
            ctx.model_info = dict(engine.model_info)
            yield
        finally:
            if ctx.tm is not None:
                await ctx.tm.close()
            await asyncio.to_thread(engine.shutdown)

    middleware = [Middleware(APIKeyMiddleware, api_key=args.api_key)] if args.api_key else []
    app = Starlette(
        routes=native_routes() + openai_routes(),
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unhandled},
    )
    app.state.ctx = ctx
    return app


async def _attach(engine: Any, metrics: PrometheusMetrics | None, should_stop: Any) -> Any:
    task = asyncio.ensure_future(engine.attach(metrics))
    while not task.done():
        await asyncio.wait({task}, timeout=STOP_POLL_S)
        if not task.done() and should_stop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise StartupInterrupted("shutdown requested while the model was loading")
    return task.result()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(request.url.path, str(exc.detail), exc.status_code)


async def _unhandled(request: Request, exc: Exception) -> Response:
    return internal_error(request, exc)
