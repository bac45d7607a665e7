"""`sglrs bench serve` against a live `sglrs serve` of the tiny random Llama."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_model import tiny_llama_dir

from sglrs.bench.serve import arrival_offsets
from sglrs.cli import main
from sglrs.ipc.ports import free_tcp_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # live_server.py

from live_server import API_KEY, start_server, stop_server  # noqa: E402


@pytest.fixture(scope="module")
def server():
    live = start_server(["--model-path", str(tiny_llama_dir())])
    yield live
    assert stop_server(live) == 0, live.log()


def bench(server, *argv: str) -> int:
    base = ["bench", "serve", "--port", str(server.port), "--api-key", API_KEY, "--disable-tqdm"]
    return main([*base, *argv])


def test_arrival_offsets():
    assert arrival_offsets(4, math.inf, np.random.default_rng(0)).tolist() == [0.0] * 4
    offsets = arrival_offsets(20000, 50.0, np.random.default_rng(0))
    assert np.all(np.diff(offsets) >= 0)
    assert np.diff(offsets).mean() == pytest.approx(1 / 50.0, rel=0.05)


def test_rate_limited_streaming_run(server, tmp_path, capsys):
    out, png = tmp_path / "serve.json", tmp_path / "serve.png"
    code = bench(
        server, "--num-prompts", "6", "--random-input-len", "20", "--random-output-len", "5",
        "--random-range-ratio", "1", "--request-rate", "200", "--max-concurrency", "3",
        "--output-file", str(out), "--plot", str(png),
    )  # fmt: skip
    assert code == 0
    assert "sglrs bench serve" in capsys.readouterr().out
    record = json.loads(out.read_text())
    m = record["metrics"]
    assert (m["completed"], m["failed"]) == (6, 0)
    assert (m["total_input_tokens"], m["total_output_tokens"]) == (120, 30)
    assert m["ttft_ms"] is not None and m["itl_ms"] is not None and m["tpot_ms"] is not None
    assert all(0 < r["ttft_s"] <= r["e2e_s"] for r in record["requests"])
    assert record["server_info"]["model_info"]["vocab_size"] > 0
    assert record["args"]["api_key"] == "<redacted>" and API_KEY not in json.dumps(record)
    assert png.read_bytes().startswith(b"\x89PNG")


def test_shared_prefix_cache_hits_come_from_the_stream(server, tmp_path):
    out = tmp_path / "gsp.json"
    argv = ["--dataset-name", "shared-prefix", "--gsp-num-groups", "2"]
    argv += ["--gsp-prompts-per-group", "3", "--gsp-system-prompt-len", "40"]
    argv += ["--gsp-question-len", "4", "--gsp-output-len", "3", "--seed", "11"]
    assert bench(server, *argv, "--flush-cache", "--output-file", str(out)) == 0
    first = json.loads(out.read_text())["metrics"]
    assert (first["completed"], first["total_input_tokens"]) == (6, 264)
    # The same prompts again, warmed up but not flushed: all but their last token are cached.
    assert bench(server, *argv, "--output-file", str(out)) == 0
    again = json.loads(out.read_text())["metrics"]
    assert again["total_cached_tokens"] == 264 - 6
    assert again["cache_hit_rate"] == pytest.approx(258 / 264)


def test_wrong_key_and_no_server_fail_clearly(server, capsys):
    base = ["bench", "serve", "--disable-tqdm", "--num-prompts", "1"]
    assert main([*base, "--port", str(server.port), "--api-key", "wrong"]) == 1
    assert "/get_model_info answered 401" in capsys.readouterr().err
    assert main([*base, "--port", str(free_tcp_port())]) == 1
    assert "cannot reach the server" in capsys.readouterr().err
