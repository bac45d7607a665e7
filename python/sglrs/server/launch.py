"""`sglrs serve`: start the engine processes, then uvicorn; shut everything down on exit.

Ctrl-C (or SIGTERM) makes uvicorn stop accepting, finish or cancel open requests (at most
`GRACEFUL_SHUTDOWN_S`), and run the app's lifespan exit, which stops the worker processes;
the `finally` here covers every other way out (a failed startup, an interrupted model load).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from typing import Any

import uvicorn

from sglrs import __version__
from sglrs.server.app import create_app
from sglrs.server_args import ServerArgs

logger = logging.getLogger("sglrs.server")

GRACEFUL_SHUTDOWN_S = 5
WATCHDOG_INTERVAL_S = 1.0


class LaunchError(RuntimeError):
    """The server cannot start with these arguments (the message says why)."""


def check_supported(args: ServerArgs) -> None:
    from sglrs.distributed.topology import Topology, TopologyError

    try:
        Topology.from_args(args)
    except TopologyError as e:
        raise LaunchError(str(e)) from None


def check_port_free(host: str, port: int) -> None:
    """Fail before loading the model rather than after, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            reason = "is already in use" if e.errno == errno.EADDRINUSE else f"failed: {e}"
            raise LaunchError(f"binding {host}:{port} {reason} (choose another --port)") from e


def describe(args: ServerArgs, info: dict[str, Any]) -> str:
    """The startup line: where the server listens and what it loaded."""
    arch = info.get("architectures")
    arch_text = ", ".join(arch) if isinstance(arch, list) else arch
    details = [
        str(v)
        for v in (
            arch_text,
            info.get("dtype"),
            info.get("device"),
            info.get("context_length") and f"context {info['context_length']}",
            info.get("max_total_tokens") and f"KV {info['max_total_tokens']} tokens",
        )
        if v
    ]
    where = f"http://{args.host}:{args.port}"
    return f"sglrs {__version__} serving {args.model_path} ({', '.join(details)}) on {where}"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, args: ServerArgs, engine: Any) -> None:
        super().__init__(config)
        self.args = args
        self.engine = engine
        self.worker_died = False
        self._watchdog: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            print(describe(self.args, self.engine.model_info), flush=True)
            self._watchdog = asyncio.get_running_loop().create_task(self._exit_on_dead_worker())

    async def _exit_on_dead_worker(self) -> None:
        """A dead worker (a TP rank above all: the others would wait on it forever) leaves the
        server unhealthy; exit instead of serving 503s."""
        while not self.should_exit:
            if not self.engine.processes_alive():
                logger.error("a worker process exited; shutting the server down")
                self.worker_died = True
                self.should_exit = True
                return
            await asyncio.sleep(WATCHDOG_INTERVAL_S)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s [server] %(levelname)s %(name)s: %(message)s",
    )


def launch_server(args: ServerArgs) -> int:
    """Run until interrupted; returns the process exit code."""
    configure_logging(args.log_level)
    try:
        check_supported(args)
        if args.node_rank == 0:  # other nodes serve no HTTP
            check_port_free(args.host, args.port)
    except LaunchError as e:
        print(f"sglrs serve: error: {e}", file=sys.stderr)
        return 2
    from sglrs.engine.runtime import Runtime  # heavy: only once the arguments are known good

    # uvicorn re-raises the signal it caught once it has shut down; SIGTERM's default action
    # would then kill us before the `finally` below, so make it a KeyboardInterrupt as well.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        runtime = Runtime(args)  # fetches the default model when no --model-path is given
    except RuntimeError as e:  # DefaultModelUnavailable: no network and nothing cached
        print(f"sglrs serve: error: {e}", file=sys.stderr)
        return 1
    if args.node_rank != 0:
        return _run_rank_workers(runtime)
    try:
        try:
            runtime.start_processes()
        except ValueError as e:  # parallelism that does not fit the model or the GPUs
            print(f"sglrs serve: error: {e}", file=sys.stderr)
            return 2
        server: _Server | None = None
        app = create_app(args, runtime, should_stop=lambda: bool(server and server.should_exit))
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            lifespan="on",
        )
        server = _Server(config, args, runtime)
        server.run()
        return 0 if server.started and not server.worker_died else 1
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: a requested, clean shutdown
        return 0
    except SystemExit as e:  # uvicorn exits this way when startup fails
        return e.code if isinstance(e.code, int) else 1
    finally:
        runtime.shutdown()


def _run_rank_workers(runtime: Any) -> int:
    """A node other than 0: run its TP ranks until one exits (rank 0 stopping included)."""
    try:
        try:
            runtime.start_rank_workers()
        except ValueError as e:
            print(f"sglrs serve: error: {e}", file=sys.stderr)
            return 2
        args = runtime.server_args
        ranks = runtime.topology.node_ranks
        print(
            f"sglrs {__version__} node {args.node_rank}/{args.nnodes}: TP ranks "
            f"{ranks.start}..{ranks.stop - 1} following {args.dist_init_addr}",
            flush=True,
        )
        return runtime.wait_workers()
    except KeyboardInterrupt:
        return 0
    finally:
        runtime.shutdown()
