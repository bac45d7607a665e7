"""The offline API, in the shape of SGLang's `sgl.Engine`.

    with sglrs.Engine(model_path=...) as engine:
        out = engine.generate("Hello", {"max_new_tokens": 16, "temperature": 0})
        print(out["text"], out["meta_info"])

The engine runs the same processes as the server (scheduler/worker, detokenizer); the
TokenizerManager lives on an event loop in a background thread, so the synchronous methods work
anywhere, and `async_generate` works from any running loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sglrs.engine.runtime import Runtime, run_in_loop
from sglrs.server_args import ServerArgs
from sglrs.serving.generate import generate_all, stream_all
from sglrs.serving.generate_request import parse_generate_body
from sglrs.serving.tokenizer_manager import TokenizerManager

_END = object()


class Engine:
    def __init__(self, model_path: str | None = None, **server_args: Any) -> None:
        args = ServerArgs.from_kwargs(model_path=model_path, **server_args)
        self.runtime = Runtime(args)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._closed = False
        try:
            self.runtime.start_processes()
            self._thread.start()
            self.tokenizer_manager: TokenizerManager = run_in_loop(
                self._loop, self.runtime.attach()
            )
        except BaseException:
            self.shutdown()
            raise

    @property
    def server_args(self) -> ServerArgs:
        return self.runtime.server_args

    @property
    def tokenizer(self) -> Any:
        return self.runtime.tokenizer

    # ---- generation ------------------------------------------------------------------------

    def generate(
        self,
        prompt: str | list[str] | None = None,
        sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        return_logprob: bool | list[bool] = False,
        logprob_start_len: int | None = None,
        top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool = False,
        stream: bool = False,
        rid: str | list[str] | None = None,
    ) -> Any:
        """Generate for one prompt (a dict) or a batch (a list); `stream=True` yields chunks."""
        body = _body(
            prompt,
            sampling_params,
            input_ids,
            return_logprob,
            logprob_start_len,
            top_logprobs_num,
            return_text_in_logprobs,
            stream,
            rid,
        )
        parsed = parse_generate_body(body)
        if stream:
            return self._iterate(stream_all(self.tokenizer_manager, parsed))
        return run_in_loop(self._loop, generate_all(self.tokenizer_manager, parsed))

    async def async_generate(
        self,
        prompt: str | list[str] | None = None,
        sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        return_logprob: bool | list[bool] = False,
        logprob_start_len: int | None = None,
        top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool = False,
        stream: bool = False,
        rid: str | list[str] | None = None,
    ) -> Any:
        """Like `generate`, awaitable from any event loop (an async iterator when streaming)."""
        body = _body(
            prompt,
            sampling_params,
            input_ids,
            return_logprob,
            logprob_start_len,
            top_logprobs_num,
            return_text_in_logprobs,
            stream,
            rid,
        )
        parsed = parse_generate_body(body)
        if stream:
            return self._aiterate(stream_all(self.tokenizer_manager, parsed))
        fut = asyncio.run_coroutine_threadsafe(
            generate_all(self.tokenizer_manager, parsed), self._loop
        )
        return await asyncio.wrap_future(fut)

    # ---- control ---------------------------------------------------------------------------

    def flush_cache(self) -> bool:
        resp = run_in_loop(self._loop, self.tokenizer_manager.control("flush_cache"))
        return bool(resp.ok)

    def get_server_info(self) -> dict[str, Any]:
        resp = run_in_loop(self._loop, self.tokenizer_manager.control("stats"))
        return {**self.server_args.to_dict(), **self.runtime.model_info, "stats": resp.payload}

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        tm = getattr(self, "tokenizer_manager", None)
        if tm is not None and self._thread.is_alive():
            run_in_loop(self._loop, tm.close(), timeout=10)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.runtime.shutdown()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass

    # ---- streaming bridges -----------------------------------------------------------------

    def _iterate(self, agen: AsyncIterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Drive an async generator on the engine loop; hand its items to this thread."""
        items: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in agen:
                    items.put(item)
            except BaseException as e:
                items.put(e)
            finally:
                items.put(_END)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()

    async def _aiterate(self, agen: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Drive an async generator on the engine loop; hand its items to the caller's loop."""
        caller = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for item in agen:
                    caller.call_soon_threadsafe(items.put_nowait, item)
            except BaseException as e:
                caller.call_soon_threadsafe(items.put_nowait, e)
            finally:
                caller.call_soon_threadsafe(items.put_nowait, _END)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := await items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()


def _body(
    prompt: Any,
    sampling_params: Any,
    input_ids: Any,
    return_logprob: Any,
    logprob_start_len: int | None,
    top_logprobs_num: int | None,
    return_text_in_logprobs: bool,
    stream: bool,
    rid: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "text": prompt,
        "input_ids": input_ids,
        "sampling_params": sampling_params,
        "return_logprob": return_logprob,
        "return_text_in_logprobs": return_text_in_logprobs,
        "stream": stream,
        "rid": rid,
    }
    if logprob_start_len is not None:
        body["logprob_start_len"] = logprob_start_len
    if top_logprobs_num is not None:
        body["top_logprobs_num"] = top_logprobs_num
    return {k: v for k, v in body.items() if v is not None}
