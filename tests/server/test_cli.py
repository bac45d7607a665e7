"""`sglrs serve`: its flags and help, and the errors raised before anything starts."""

from __future__ import annotations

import socket

import pytest

from sglrs import __version__
from sglrs.cli import build_parser, main
from sglrs.server.launch import describe
from sglrs.server_args import ServerArgs

# Every flag the issue names, spelled as SGLang does.
FLAGS = """
--model-path --tokenizer-path --host --port --dtype --context-length --load-format --tp-size
--mem-fraction-static --max-running-requests --max-total-tokens --max-prefill-tokens
--chunked-prefill-size --schedule-policy --schedule-conservativeness --page-size
--disable-radix-cache --attention-backend --grammar-backend --api-key --served-model-name
--chat-template --log-level --log-requests --enable-metrics --enable-cache-report
--stream-interval --skip-tokenizer-init --random-seed
""".split()


def test_serve_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    helps = {opt: a.help for a in serve._actions for opt in a.option_strings}
    for flag in FLAGS:
        assert flag in text, flag
        assert helps[flag] and len(helps[flag]) > 10, flag


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"sglrs {__version__}"


def test_defaults_match_sglang():
    args = ServerArgs.from_cli_args(build_parser().parse_args(["serve"]))
    assert (args.host, args.port, args.model_path) == ("127.0.0.1", 30000, None)


def test_invalid_values_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--page-size", "0"])
    assert exit_info.value.code == 2
    assert "--page-size must be >= 1" in capsys.readouterr().err


def test_impossible_parallelism_is_a_clear_error(capsys):
    assert main(["serve", "--tp-size", "3", "--nnodes", "2", "--dist-init-addr", "h:1"]) == 2
    assert "--tp-size 3 must be a multiple of --nnodes 2" in capsys.readouterr().err


def test_busy_port_fails_before_loading(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model-path", "/nonexistent", "--port", str(port)]) == 2
    assert "already in use" in capsys.readouterr().err


def test_startup_line_says_where_and_what():
    args = ServerArgs(model_path="/m/tiny", port=4321)
    info = {"architectures": ["LlamaForCausalLM"], "context_length": 2048, "dtype": "float32"}
    line = describe(args, info)
    assert "http://127.0.0.1:4321" in line and "/m/tiny" in line
    assert "LlamaForCausalLM" in line and "context 2048" in line and "float32" in line


def test_path_objects_become_strings():
    """Engine(Path(...)) works: the args are handed to the processes as JSON."""
    import json
    from pathlib import Path

    args = ServerArgs(model_path=Path("/models/x"), tokenizer_path=Path("/tok"))
    assert (args.model_path, args.tokenizer_path) == ("/models/x", "/tok")
    json.dumps(args.to_dict())
