"""`sglrs bench offline|serve`: the subcommand's parser and its entry point."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sglrs.bench.offline import add_offline_args, run_offline
from sglrs.bench.serve import add_serve_args, run_serve

OFFLINE_DESCRIPTION = (
    "Benchmark an Engine in this process: every request submitted at once. Takes all the "
    "flags of `sglrs serve` for the engine, plus the workload flags."
)
SERVE_DESCRIPTION = (
    "Benchmark a running server over HTTP with streamed /generate requests, at a request rate "
    "and concurrency of your choice."
)


def add_bench_parser(commands: Any) -> None:
    """Add `bench` and its modes to the top-level subparsers."""
    bench = commands.add_parser(
        "bench",
        help="measure throughput and latency (offline engine or a running server)",
        description="Throughput and latency benchmarks, in the manner of SGLang's bench tools.",
    )
    modes = bench.add_subparsers(dest="bench_mode", metavar="MODE", required=True)
    offline = modes.add_parser(
        "offline", help="an Engine in this process", description=OFFLINE_DESCRIPTION
    )
    add_offline_args(offline)
    offline.set_defaults(subparser=offline)
    serve = modes.add_parser(
        "serve", help="a running server over HTTP", description=SERVE_DESCRIPTION
    )
    add_serve_args(serve)
    serve.set_defaults(subparser=serve)


def run_bench(args: argparse.Namespace, argv: list[str]) -> int:
    command = ["sglrs", *argv]
    run = run_offline if args.bench_mode == "offline" else run_serve
    try:
        run(args, command)
    except ValueError as e:  # a flag or dataset that cannot work: a usage error
        args.subparser.error(str(e))
    except RuntimeError as e:
        print(f"sglrs bench {args.bench_mode}: {e}", file=sys.stderr)
        return 1
    return 0
