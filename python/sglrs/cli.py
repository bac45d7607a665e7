"""The `sglrs` command line."""

from __future__ import annotations

import argparse
import sys

from sglrs import __version__
from sglrs.bench.cli import add_bench_parser, run_bench
from sglrs.server_args import ServerArgs, add_cli_args

SERVE_DESCRIPTION = (
    "Serve a model over HTTP: SGLang's native API (/generate, /get_model_info, ...) and the "
    "OpenAI API (/v1/completions, /v1/chat/completions, /v1/models). Flags use SGLang's names."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sglrs", description="sglrs: fast LLM serving")
    parser.add_argument("--version", action="version", version=f"sglrs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="start the HTTP server (SGLang- and OpenAI-compatible)",
        description=SERVE_DESCRIPTION,
    )
    add_cli_args(serve)
    serve.set_defaults(subparser=serve)
    add_bench_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "serve":
        return _serve(parser, args)
    if args.command == "bench":
        return run_bench(args, sys.argv[1:] if argv is None else argv)
    parser.error(f"unknown command {args.command}")
    return 2


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        server_args = ServerArgs.from_cli_args(args)
    except ValueError as e:
        args.subparser.error(str(e))
    from sglrs.server.launch import launch_server  # heavy imports only when serving

    return launch_server(server_args)


if __name__ == "__main__":
    sys.exit(main())
