"""Server-sent events, and cancelling a request's work when its client disconnects.

Both watch the ASGI `receive` channel for `http.disconnect` instead of polling: once the body
is read, the next message on it is the disconnect. Cancelling the work raises inside the
TokenizerManager's generators, whose cleanup aborts the request in the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from sglrs.server.errors import ClientDisconnected

logger = logging.getLogger(__name__)

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"


def sse_event(payload: Any) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


async def wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise ClientDisconnected.

    Call only after the request body has been read.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # we were cancelled ourselves (server shutdown)
        await _cancel(task)
        await _cancel(watcher)
        raise
    await _cancel(watcher)
    if not task.done():
        await _cancel(task)
        raise ClientDisconnected()
    return task.result()


class SSEResponse:
    """Streams `events` (already-encoded SSE bytes) and closes the iterator however it ends.

    On a client disconnect the iterator is cancelled and closed, which releases (aborts) the
    generation behind it.
    """

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        pump = asyncio.ensure_future(self._pump(send))
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(watcher)
            await _cancel(pump)
            await self.events.aclose()
        if not pump.cancelled() and pump.exception() is not None:
            logger.error("streaming failed", exc_info=pump.exception())

    async def _pump(self, send: Send) -> None:
        try:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we were writing
            return
