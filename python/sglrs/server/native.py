"""SGLang's native endpoints: /generate, health, model and server info, cache and abort."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sglrs import __version__
from sglrs.server.context import (
    ServerContext,
    describe_failure,
    guarded,
    read_json,
    server_context,
)
from sglrs.server.errors import APIError, json_response, native_error_body
from sglrs.server.metrics import CONTENT_TYPE
from sglrs.server.outputs import first_output, raise_if_rejected
from sglrs.server.streaming import DONE, SSEResponse, cancel_on_disconnect, sse_event
from sglrs.serving.generate import generate_all, stream_all
from sglrs.serving.generate_request import RequestError, SingleRequest, parse_generate_body

logger = logging.getLogger(__name__)

HEALTH_GENERATE_TIMEOUT_S = 30.0
STATS_TIMEOUT_S = 10.0


@guarded
async def generate(request: Request) -> Response:
    ctx = server_context(request)
    parsed = parse_generate_body(await read_json(request))
    tm = ctx.tokenizer_manager
    if not parsed.stream:
        result = await cancel_on_disconnect(request, generate_all(tm, parsed))
        for out in result if isinstance(result, list) else [result]:
            raise_if_rejected(out)
        return json_response(result)
    stream = stream_all(tm, parsed)
    # The first chunk is awaited before answering, so validation errors are still a 400.
    first = await cancel_on_disconnect(request, first_output(stream))
    return SSEResponse(_native_events(ctx, first, stream))


async def _native_events(
    ctx: ServerContext,
    first: dict[str, Any] | None,
    stream: AsyncGenerator[dict[str, Any], None],
) -> AsyncGenerator[bytes, None]:
    try:
        if first is not None:
            yield sse_event(first)
            async for out in stream:
                yield sse_event(out)
    except RequestError as e:
        yield sse_event(native_error_body(str(e), 400))
    except Exception as e:
        yield sse_event(native_error_body(*describe_failure(ctx, "/generate", e)))
    finally:
        await stream.aclose()
    yield DONE


async def health(request: Request) -> Response:
    ctx = server_context(request)
    if ctx.healthy():
        return Response(status_code=200)
    reason = ctx.tm.fatal_error if ctx.tm is not None else "not started"
    return json_response(native_error_body(f"unhealthy: {reason}", 503), 503)


@guarded
async def health_generate(request: Request) -> Response:
    """Healthy only if a one-token generation completes."""
    ctx = server_context(request)
    if not ctx.healthy():
        return await health(request)
    tm = ctx.tokenizer_manager
    req = SingleRequest(
        rid=f"health-{uuid.uuid4().hex}",
        text=None,
        input_ids=[0],
        sampling_params={"max_new_tokens": 1, "temperature": 0.0},
    )
    ids, params = tm.prepare(req)

    async def run() -> None:
        async for _ in tm.generate(req, ids, params):
            pass

    try:
        await asyncio.wait_for(cancel_on_disconnect(request, run()), HEALTH_GENERATE_TIMEOUT_S)
    except asyncio.TimeoutError:
        message = f"no token within {HEALTH_GENERATE_TIMEOUT_S:.0f} s"
        return json_response(native_error_body(f"unhealthy: {message}", 503), 503)
    return Response(status_code=200)


async def model_info(request: Request) -> Response:
    ctx = server_context(request)
    info = ctx.model_info
    args = ctx.args
    model_path = info.get("model_path") or args.model_path
    return json_response(
        {
            "model_path": model_path,
            "tokenizer_path": info.get("tokenizer_path") or args.tokenizer_path or model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": info.get("weight_version", "default"),
            "architectures": info.get("architectures"),
            "context_length": info.get("context_length"),
            "vocab_size": info.get("vocab_size"),
            "served_model_name": ctx.served_model_name,
            # The frontend language renders roles with it (clients need no tokenizer files).
            **_chat_template_fields(ctx),
        }
    )


def _chat_template_fields(ctx: ServerContext) -> dict[str, Any]:
    tokenizer = ctx.tm.tokenizer if ctx.tm is not None else None
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return {"chat_template": None}
    return {
        "chat_template": template,
        "bos_token": getattr(tokenizer, "bos_token", None),
        "eos_token": getattr(tokenizer, "eos_token", None),
    }


@guarded
async def server_info(request: Request) -> Response:
    ctx = server_context(request)
    resp = await ctx.tokenizer_manager.control("stats", timeout=STATS_TIMEOUT_S)
    args = ctx.args.to_dict()
    if args.get("api_key"):
        args["api_key"] = "<redacted>"  # the info endpoint must not hand out the credential
    return json_response(
        {
            **args,
            "model_info": ctx.model_info,
            "internal_states": [resp.payload],
            "version": __version__,
        }
    )


@guarded
async def flush_cache(request: Request) -> Response:
    resp = await server_context(request).tokenizer_manager.control("flush_cache")
    if not resp.ok:
        raise APIError(resp.message or "the cache could not be flushed", 400)
    return PlainTextResponse("Cache flushed.\n")


@guarded
async def abort_request(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise APIError("request body must be a JSON object")
    unknown = set(body) - {"rid", "abort_all"}
    if unknown:
        raise APIError(f"unknown field: {sorted(unknown)[0]}")
    rid = body.get("rid")
    abort_all = body.get("abort_all", False)
    if rid is not None and not isinstance(rid, str):
        raise APIError("rid must be a string")
    if not isinstance(abort_all, bool):
        raise APIError("abort_all must be a boolean")
    if not rid and not abort_all:
        raise APIError("give a rid, or abort_all: true")
    server_context(request).tokenizer_manager.abort(rid or None, abort_all)
    return Response(status_code=200)


@guarded
async def metrics(request: Request) -> Response:
    ctx = server_context(request)
    if ctx.metrics is None:
        raise APIError("metrics are disabled; start the server with --enable-metrics", 404)
    try:
        resp = await ctx.tokenizer_manager.control("stats", timeout=STATS_TIMEOUT_S)
        ctx.metrics.set_scheduler_stats(resp.payload)
    except (asyncio.TimeoutError, RuntimeError) as e:
        # Per-request metrics are still worth serving while the scheduler is busy or down.
        logger.warning("metrics: no scheduler stats (%s)", e)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


async def version(request: Request) -> Response:
    return json_response({"version": __version__})


def native_routes() -> list[Route]:
    return [
        Route("/generate", generate, methods=["POST", "PUT"]),
        Route("/health", health, methods=["GET"]),
        Route("/health_generate", health_generate, methods=["GET"]),
        Route("/get_model_info", model_info, methods=["GET"]),
        Route("/model_info", model_info, methods=["GET"]),
        Route("/get_server_info", server_info, methods=["GET"]),
        Route("/server_info", server_info, methods=["GET"]),
        Route("/flush_cache", flush_cache, methods=["GET", "POST"]),
        Route("/abort_request", abort_request, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
    ]
