"""The scheduler/worker process (TP rank 0): receive requests, run engine steps, send tokens out.

It blocks on its input socket only when the engine has nothing to do; otherwise it drains
whatever arrived and runs the next step, so new requests join the batch at step boundaries.
A failure while loading, or an exception in a step, is reported to the TokenizerManager as an
ErrorMsg (the server then reports unhealthy) instead of leaving clients hanging.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import zmq

from sglrs.engine.step_trace import StepTrace
from sglrs.ipc import messages as msg
from sglrs.server_args import ServerArgs

logger = logging.getLogger(__name__)

IDLE_CHECK_INTERVAL_S = 5.0
# CPU only: waking from idle, keep receiving while messages follow each other within
# BURST_GAP_MS (a client's batch arrives as a burst of requests), for at most BURST_MAX_S.
# Otherwise the first request is prefilled alone and the rest wait for that step: with 32
# ~100-token prompts, a 104-token step of 0.1-0.24 s before the others' prefill.
BURST_GAP_MS = 1
BURST_MAX_S = 0.02
PROFILE_ENV = "SGLRS_PROFILE_DIR"  # a directory: the step loop runs under cProfile


def _run_profiled(loop: _Loop) -> None:
    """Run the loop under cProfile; write `scheduler.pstats` and the top functions by
    cumulative and own time to `$SGLRS_PROFILE_DIR` when it ends."""
    import cProfile
    import io
    import pstats

    def stop(*_: object) -> None:
        raise SystemExit(0)  # the parent's terminate(): still write the profile

    signal.signal(signal.SIGTERM, stop)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(loop.run)
    finally:
        out = Path(os.environ[PROFILE_ENV])
        out.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(out / "scheduler.pstats")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(40)
        (out / "scheduler_profile.txt").write_text(text.getvalue())


def run_scheduler_process(server_args_json: str, endpoints: dict[str, str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C and shuts us down
    args = ServerArgs(**json.loads(server_args_json))
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s [scheduler] %(levelname)s %(message)s"
    )
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.bind(endpoints["scheduler_input"])
    to_detokenizer = ctx.socket(zmq.PUSH)
    to_detokenizer.connect(endpoints["detokenizer_input"])
    to_tokenizer = ctx.socket(zmq.PUSH)
    to_tokenizer.connect(endpoints["tokenizer_input"])
    try:
        from sglrs.engine.engine_core import EngineCore
        from sglrs.engine.tp_worker import init_rank

        core = EngineCore(args, init_rank(args, 0))  # TP rank 0 joins its group first
        ready = msg.ReadyMsg(info=core.info())
    except Exception as e:
        logger.exception("failed to start the engine")
        to_tokenizer.send(msg.encode(msg.ErrorMsg(where="startup", message=_describe(e))))
        time.sleep(0.5)  # let the message leave before the context closes
        ctx.destroy(linger=1000)
        return
    to_tokenizer.send(msg.encode(ready))
    loop = _Loop(core, inbox, to_detokenizer, to_tokenizer)
    clean = False
    try:
        _run_profiled(loop) if os.environ.get(PROFILE_ENV) else loop.run()
        clean = True
    except Exception as e:
        logger.exception("the step loop failed")
        to_tokenizer.send(msg.encode(msg.ErrorMsg(where="scheduler", message=_describe(e))))
        time.sleep(0.5)
    finally:
        core.shutdown()
        ctx.destroy(linger=1000)
    if clean:  # a failed TP group may hang in its teardown; the process exit frees it
        from sglrs.distributed import destroy_tensor_parallel

        destroy_tensor_parallel()


class _Loop:
    def __init__(self, core: Any, inbox: Any, to_detokenizer: Any, to_tokenizer: Any) -> None:
        self.core = core
        self.inbox = inbox
        self.to_detokenizer = to_detokenizer
        self.to_tokenizer = to_tokenizer
        self.running = True
        self.last_check = time.monotonic()
        self.trace = StepTrace.from_env()
        self.gather_bursts = core.device.type == "cpu"

    def run(self) -> None:
        while self.running:
            self._receive(block=not self.core.has_work())
            if not self.running:
                break
            start = time.perf_counter()
            outs = self.core.step()
            if self.trace is not None:
                self.trace.record(start, self.core.last_step)
            self._emit(outs)
            if self.trace is not None and not self.core.has_work():
                self.trace.flush()
            if not self.core.has_work() and time.monotonic() - self.last_check > 1.0:
                self.core.check_integrity()  # cheap when idle; catches KV leaks early
                self.core.heartbeat()  # tensor parallel: a dead rank fails the server now
                self.last_check = time.monotonic()

    def _receive(self, block: bool) -> None:
        if block and not self.inbox.poll(int(IDLE_CHECK_INTERVAL_S * 1000)):
            return
        self._drain()
        if block and self.gather_bursts:
            deadline = time.monotonic() + BURST_MAX_S
            while time.monotonic() < deadline and self.inbox.poll(BURST_GAP_MS):
                self._drain()

    def _drain(self) -> None:
        while True:  # non-blocking drain: cheaper than a poll call per step
            try:
                raw = self.inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(msg.decode(raw))

    def _handle(self, message: msg.Message) -> None:
        if isinstance(message, msg.GenerateReq):
            self._emit(self.core.add_request(message))
        elif isinstance(message, msg.AbortReq):
            self._emit(self.core.abort(message.rid, message.abort_all, message.message))
        elif isinstance(message, msg.ControlReq):
            self.to_tokenizer.send(msg.encode(self._control(message)))
        else:
            logger.warning("scheduler: unexpected message %s", type(message).__name__)

    def _control(self, req: msg.ControlReq) -> msg.ControlResp:
        if req.kind == "flush_cache":
            ok = self.core.flush_cache()
            text = "" if ok else "cannot flush the cache while requests are running"
            return msg.ControlResp(req_id=req.req_id, ok=ok, message=text)
        if req.kind == "stats":
            return msg.ControlResp(req_id=req.req_id, ok=True, payload=self.core.stats())
        if req.kind == "shutdown":
            self.running = False
            return msg.ControlResp(req_id=req.req_id, ok=True)
        return msg.ControlResp(req_id=req.req_id, ok=False, message=f"unknown control {req.kind}")

    def _emit(self, outs: list[msg.TokenOut]) -> None:
        if outs:
            self.to_detokenizer.send(msg.encode(msg.BatchTokenOut(outs=outs)), copy=False)


def _describe(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(e).__name__}: {e}{where}"
