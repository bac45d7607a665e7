"""`/v1/completions`, `/v1/chat/completions` and `/v1/models`."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sglrs.server.context import (
    ServerContext,
    describe_failure,
    guarded,
    read_json,
    server_context,
)
from sglrs.server.errors import APIError, json_response, openai_error_body
from sglrs.server.openai.convert import (
    chat_prompt_ids,
    chat_to_generate,
    completion_to_generate,
    openai_message,
    request_id,
)
from sglrs.server.openai.protocol import (
    OpenAIRequest,
    parse_chat_request,
    parse_completion_request,
)
from sglrs.server.openai.responses import (
    ResponseInfo,
    StreamFormatter,
    chat_response,
    completion_response,
)
from sglrs.server.outputs import first_output, raise_if_rejected
from sglrs.server.streaming import DONE, SSEResponse, cancel_on_disconnect, sse_event
from sglrs.serving.generate import generate_all, stream_all
from sglrs.serving.generate_request import RequestError, parse_generate_body


def _require_tokenizer(ctx: ServerContext) -> None:
    if ctx.tokenizer_manager.tokenizer is None:
        raise APIError(
            "the OpenAI API needs a tokenizer; the server runs with --skip-tokenizer-init "
            "(use /generate with input_ids)"
        )


@guarded
async def completions(request: Request) -> Response:
    ctx = server_context(request)
    req = parse_completion_request(await read_json(request))
    _require_tokenizer(ctx)
    rid = request_id(req)
    return await _run(request, ctx, req, completion_to_generate(req, rid), rid, chat=False)


@guarded
async def chat_completions(request: Request) -> Response:
    ctx = server_context(request)
    req = parse_chat_request(await read_json(request))
    _require_tokenizer(ctx)
    tm = ctx.tokenizer_manager
    rid = request_id(req)
    ids = chat_prompt_ids(tm.tokenizer, req.messages)
    body = chat_to_generate(req, rid, ids, tm.context_length)
    return await _run(request, ctx, req, body, rid, chat=True)


async def _run(
    request: Request,
    ctx: ServerContext,
    req: OpenAIRequest,
    body: dict[str, Any],
    rid: str | list[str],
    chat: bool,
) -> Response:
    tm = ctx.tokenizer_manager
    first_rid = rid if isinstance(rid, str) else rid[0]
    info = ResponseInfo(
        id=("chatcmpl-" if chat else "cmpl-") + first_rid,
        model=ctx.served_model_name,
        created=int(time.time()),
        cache_report=ctx.args.enable_cache_report,
    )
    try:
        parsed = parse_generate_body(body)
        if not req.stream:
            result = await cancel_on_disconnect(request, generate_all(tm, parsed))
            outputs = result if isinstance(result, list) else [result]
            for out in outputs:
                raise_if_rejected(out)
            build = chat_response if chat else completion_response
            return json_response(build(outputs, req, info))
        stream = stream_all(tm, parsed)
        first = await cancel_on_disconnect(request, first_output(stream))
    except RequestError as e:
        message, param = openai_message(str(e), req.max_tokens_field)
        raise APIError(message, 400, param) from e
    choices = len(parsed.requests) * req.n
    formatter = StreamFormatter(chat, req, info, choices)
    return SSEResponse(_openai_events(ctx, first, stream, formatter, req))


async def _openai_events(
    ctx: ServerContext,
    first: dict[str, Any] | None,
    stream: AsyncGenerator[dict[str, Any], None],
    formatter: StreamFormatter,
    req: OpenAIRequest,
) -> AsyncGenerator[bytes, None]:
    try:
        if first is not None:
            for chunk in formatter.chunks(first):
                yield sse_event(chunk)
            async for out in stream:
                for chunk in formatter.chunks(out):
                    yield sse_event(chunk)
        usage = formatter.usage_chunk()
        if usage is not None:
            yield sse_event(usage)
    except RequestError as e:
        message, param = openai_message(str(e), req.max_tokens_field)
        yield sse_event({"error": openai_error_body(message, 400, param)})
    except Exception as e:
        message, status = describe_failure(ctx, "/v1", e)
        yield sse_event({"error": openai_error_body(message, status)})
    finally:
        await stream.aclose()
    yield DONE


def _model_card(ctx: ServerContext) -> dict[str, Any]:
    return {
        "id": ctx.served_model_name,
        "object": "model",
        "created": ctx.created,
        "owned_by": "sglrs",
        "root": ctx.args.model_path,
        "max_model_len": ctx.model_info.get("context_length"),
    }


async def list_models(request: Request) -> Response:
    ctx = server_context(request)
    return json_response({"object": "list", "data": [_model_card(ctx)]})


@guarded
async def retrieve_model(request: Request) -> Response:
    ctx = server_context(request)
    name = request.path_params["model"]
    if name != ctx.served_model_name:
        raise APIError(f"model {name!r} does not exist; this server serves one model", 404)
    return json_response(_model_card(ctx))


def openai_routes() -> list[Route]:
    return [
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    ]
