"""TokenizerManager: the asyncio side of sglrs, shared by the HTTP server and the offline Engine.

It tokenizes and validates requests, sends them to the scheduler, and turns the detokenizer's
deltas into SGLang-shaped outputs: cumulative `text` and `output_ids` plus `meta_info`. It never
runs model work, so HTTP traffic cannot stall the step loop (a separate process).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from sglrs.ipc import messages as msg
from sglrs.ipc.ports import PortArgs
from sglrs.sampling.params import SamplingParams
from sglrs.serving.generate_request import RequestError, SingleRequest

logger = logging.getLogger(__name__)


@dataclass
class _ReqState:
    """Everything received so far for one request, and an event for its waiter."""

    rid: str
    prompt_tokens: int
    stream: bool
    want_logprob_text: bool
    created: float = field(default_factory=time.perf_counter)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    text: str = ""
    output_ids: list[int] = field(default_factory=list)
    finish_reason: dict[str, Any] | None = None
    finished: bool = False
    cached_tokens: int = 0
    completion_tokens: int = 0
    num_retractions: int = 0
    first_token_time: float | None = None
    last_token_time: float | None = None
    output_logprobs: list[list[Any]] = field(default_factory=list)
    output_top_logprobs: list[list[list[Any]]] = field(default_factory=list)
    input_logprobs: list[list[Any]] | None = None
    input_top_logprobs: list[list[list[Any]]] | None = None
    want_logprob: bool = False
    want_top: bool = False


class MetricsHooks:
    """What the TokenizerManager reports per request; the metrics module overrides these."""

    def on_first_token(self, seconds: float) -> None: ...
    def on_tokens(self, n: int, seconds_per_token: float) -> None: ...
    def on_finish(
        self, prompt_tokens: int, completion_tokens: int, cached: int, e2e: float, aborted: bool
    ) -> None: ...


class TokenizerManager:
    def __init__(
        self,
        port_args: PortArgs,
        tokenizer: Any | None,
        stream_interval: int = 1,
        metrics: MetricsHooks | None = None,
        log_requests: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.model_info: dict[str, Any] = {}
        self.context_length = 0
        self.vocab_size = 0
        self.stream_interval = stream_interval
        self.metrics = metrics or MetricsHooks()
        self.log_requests = log_requests
        self._port_args = port_args
        self._states: dict[str, _ReqState] = {}
        self._control_ids = itertools.count()
        self._control_waiters: dict[int, asyncio.Future[msg.ControlResp]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.fatal_error: str | None = None
        self._ctx: zmq.asyncio.Context | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sockets and start the receive loop (call inside the running event loop)."""
        loop = asyncio.get_running_loop()
        self._ctx = zmq.asyncio.Context()
        self._to_scheduler = self._ctx.socket(zmq.PUSH)
        self._to_scheduler.connect(self._port_args.scheduler_input)
        self._from_workers = self._ctx.socket(zmq.PULL)
        self._from_workers.bind(self._port_args.tokenizer_input)
        self._ready = loop.create_future()
        self._tasks.append(loop.create_task(self._recv_loop()))

    def watch_processes(self, processes: list[Any], interval: float = 1.0) -> None:
        """Mark the engine failed (and wake every waiter) if a worker process dies."""

        async def watch() -> None:
            while self.fatal_error is None:
                dead = [p.name for p in processes if not p.is_alive()]
                if dead:
                    self._fail(f"worker process {', '.join(dead)} exited")
                await asyncio.sleep(interval)

        self._tasks.append(asyncio.get_running_loop().create_task(watch()))

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Wait for the scheduler's ReadyMsg (the model is loaded) and adopt its model info."""
        assert self._ready is not None, "start() first"
        info = await asyncio.wait_for(self._ready, timeout)
        self.model_info = info
        self.context_length = int(info["context_length"])
        self.vocab_size = int(info["vocab_size"])
        return info

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    @property
    def healthy(self) -> bool:
        return self.fatal_error is None

    # ---- requests --------------------------------------------------------------------------

    def prepare(self, req: SingleRequest) -> tuple[list[int], SamplingParams]:
        """Tokenize and validate one request; RequestError names what is wrong."""
        if req.input_ids is not None:
            input_ids = list(req.input_ids)
            bad = [t for t in input_ids if not 0 <= t < self.vocab_size]
            if bad:
                raise RequestError(f"input_ids: token id {bad[0]} is outside the vocabulary")
        else:
            if self.tokenizer is None:
                raise RequestError(
                    "text input needs a tokenizer (server runs with "
                    "--skip-tokenizer-init): send input_ids"
                )
            input_ids = self.tokenizer.encode(req.text)
            if not input_ids:
                raise RequestError("text tokenizes to nothing")
        try:
            params = SamplingParams.from_dict(req.sampling_params)
            params.verify(self.vocab_size)
        except ValueError as e:
            raise RequestError(str(e)) from e
        if len(input_ids) >= self.context_length:
            raise RequestError(
                f"the prompt has {len(input_ids)} tokens; the context length is "
                f"{self.context_length}"
            )
        if len(input_ids) + params.max_new_tokens > self.context_length:
            raise RequestError(
                f"max_new_tokens: {len(input_ids)} prompt tokens + {params.max_new_tokens} new "
                f"tokens exceed the context length of {self.context_length}"
            )
        if req.return_logprob and req.logprob_start_len >= len(input_ids):
            raise RequestError("logprob_start_len must be smaller than the prompt length")
        return input_ids, params

    async def generate(
        self, req: SingleRequest, input_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield cumulative outputs (every `stream_interval` tokens if streaming; else once)."""
        if not self.healthy:
            raise RuntimeError(f"the engine failed: {self.fatal_error}")
        if req.rid in self._states:
            raise RequestError(f"rid {req.rid!r} is already running")
        state = _ReqState(
            rid=req.rid,
            prompt_tokens=len(input_ids),
            stream=req.stream,
            want_logprob_text=req.return_text_in_logprobs,
            want_logprob=req.return_logprob,
            want_top=req.return_logprob and req.top_logprobs_num > 0,
        )
        self._states[req.rid] = state
        self._send(
            msg.GenerateReq(
                rid=req.rid,
                input_ids=input_ids,
                sampling_params=params.to_dict(),
                return_logprob=req.return_logprob,
                logprob_start_len=req.logprob_start_len,
                top_logprobs_num=req.top_logprobs_num,
                stream=req.stream,
                priority=req.priority,
            )
        )
        if self.log_requests:
            logger.info("request %s: %d prompt tokens, %s", req.rid, len(input_ids), params)
        sent_tokens = 0
        try:
            while True:
                await state.event.wait()
                state.event.clear()
                if self.fatal_error is not None and not state.finished:
                    raise RuntimeError(f"the engine failed: {self.fatal_error}")
                fresh = state.completion_tokens - sent_tokens
                if state.finished or (state.stream and fresh >= self.stream_interval and fresh > 0):
                    sent_tokens = state.completion_tokens
                    yield self._output(state)
                if state.finished:
                    return
        finally:
            if not state.finished:
                self.abort(req.rid)
            self._states.pop(req.rid, None)

    def abort(self, rid: str | None = None, abort_all: bool = False) -> None:
        self._send(msg.AbortReq(rid=rid, abort_all=abort_all))

    async def control(self, kind: str, timeout: float = 60.0) -> msg.ControlResp:
        req_id = next(self._control_ids)
        fut: asyncio.Future[msg.ControlResp] = asyncio.get_running_loop().create_future()
        self._control_waiters[req_id] = fut
        self._send(msg.ControlReq(req_id=req_id, kind=kind))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._control_waiters.pop(req_id, None)

    def num_running(self) -> int:
        return len(self._states)

    # ---- internals -------------------------------------------------------------------------

    def _send(self, message: msg.Message) -> None:
        self._to_scheduler.send(msg.encode(message), copy=False)

    async def _recv_loop(self) -> None:
        while True:
            data = await self._from_workers.recv()
            try:
                self._dispatch(msg.decode(data))
            except Exception:  # a bad message must not kill the loop serving everyone
                logger.exception("failed to handle a worker message")

    def _dispatch(self, message: msg.Message) -> None:
        if isinstance(message, msg.BatchStrOut):
            now = time.perf_counter()
            for out in message.outs:
                state = self._states.get(out.rid)
                if state is not None:
                    self._apply(state, out, now)
        elif isinstance(message, msg.ControlResp):
            fut = self._control_waiters.get(message.req_id)
            if fut is not None and not fut.done():
                fut.set_result(message)
        elif isinstance(message, msg.ReadyMsg):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message.info)
        elif isinstance(message, msg.ErrorMsg):
            self._fail(f"{message.where}: {message.message}")

    def _fail(self, reason: str) -> None:
        if self.fatal_error is None:
            self.fatal_error = reason
            logger.error("engine failure: %s", reason)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"the engine failed to start: {reason}"))
        for state in self._states.values():
            state.event.set()

    def _apply(self, state: _ReqState, out: msg.StrOut, now: float) -> None:
        tok = out.token
        n_new = len(tok.new_token_ids)
        if n_new:
            if state.first_token_time is None:
                state.first_token_time = now
                self.metrics.on_first_token(now - state.created)
            elif state.last_token_time is not None:
                self.metrics.on_tokens(n_new, (now - state.last_token_time) / n_new)
            state.last_token_time = now
        state.text += out.text_delta
        state.output_ids.extend(tok.new_token_ids)
        state.completion_tokens = tok.completion_tokens
        state.cached_tokens = tok.cached_tokens
        state.num_retractions = tok.num_retractions
        if tok.output_logprobs:
            state.output_logprobs.extend(self._triples(state, tok.output_logprobs))
        if tok.output_top_logprobs:
            state.output_top_logprobs.extend(
                self._triples(state, top) for top in tok.output_top_logprobs
            )
        if tok.input_logprobs is not None:
            state.input_logprobs = self._triples(state, tok.input_logprobs)
        if tok.input_top_logprobs is not None:
            state.input_top_logprobs = [
                self._triples(state, top) if top else None for top in tok.input_top_logprobs
            ]
        if tok.finish_reason is not None:
            state.finish_reason = tok.finish_reason
            state.finished = True
            self.metrics.on_finish(
                state.prompt_tokens,
                state.completion_tokens,
                state.cached_tokens,
                now - state.created,
                tok.finish_reason.get("type") == "abort",
            )
        state.event.set()

    def _triples(self, state: _ReqState, pairs: list[list[float]]) -> list[list[Any]]:
        """[[logprob, id], ...] -> SGLang's [[logprob, id, text|None], ...]."""
        out = []
        for pair in pairs:
            token_id = int(pair[1])
            text = None
            if state.want_logprob_text and self.tokenizer is not None:
                text = self.tokenizer.decode([token_id])
            out.append([pair[0], token_id, text])
        return out

    def _output(self, state: _ReqState) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": state.rid,
            "finish_reason": state.finish_reason,
            "prompt_tokens": state.prompt_tokens,
            "completion_tokens": state.completion_tokens,
            "cached_tokens": state.cached_tokens,
            "num_retractions": state.num_retractions,
        }
        if state.finished:
            meta["e2e_latency"] = time.perf_counter() - state.created
        if state.want_logprob:
            meta["input_token_logprobs"] = state.input_logprobs or []
            meta["output_token_logprobs"] = list(state.output_logprobs)
            meta["output_token_logprobs_length"] = len(state.output_logprobs)
            if state.want_top:
                meta["input_top_logprobs"] = state.input_top_logprobs or []
                meta["output_top_logprobs"] = list(state.output_top_logprobs)
        result: dict[str, Any] = {"output_ids": list(state.output_ids), "meta_info": meta}
        if self.tokenizer is not None:
            result = {"text": state.text, **result}
        return result
