"""`sglrs bench offline` end to end on the tiny random Llama."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_model import tiny_llama_dir

from sglrs.bench.datasets import lengths
from sglrs.bench.offline import bench_engine
from sglrs.cli import build_parser
from sglrs.engine.engine import Engine

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("starlette", "uvicorn")


def bench_args(*argv: str):
    return build_parser().parse_args(["bench", "offline", "--disable-tqdm", *argv])


@pytest.fixture(scope="module")
def engine():
    with Engine(
        model_path=str(tiny_llama_dir()),
        max_total_tokens=8192,
        log_level="warning",
        random_seed=0,
    ) as eng:
        yield eng


def test_cli_run_streams_writes_files_and_needs_no_http_server(tmp_path):
    # Packages that fail to import stand in for a machine without the HTTP server's deps;
    # PYTHONPATH reaches the engine's child processes too.
    for name in BLOCKED:
        (tmp_path / "blocked" / name).mkdir(parents=True)
        (tmp_path / "blocked" / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed here')\n"
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path / "blocked"), str(REPO / "python"), env.get("PYTHONPATH", "")]
    )
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    argv = ["bench", "offline", "--model-path", str(tiny_llama_dir()), "--log-level", "warning"]
    argv += ["--num-prompts", "5", "--random-input-len", "24", "--random-output-len", "6"]
    argv += ["--random-range-ratio", "0.5", "--seed", "7", "--stream", "--disable-tqdm"]
    argv += ["--output-file", str(out), "--plot", str(png)]
    proc = subprocess.run(
        [sys.executable, "-m", "sglrs.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sglrs bench offline" in proc.stdout and "Output token throughput" in proc.stdout

    record = json.loads(out.read_text())
    rng = np.random.default_rng(7)
    want_in, want_out = lengths(24, 0.5, 5, rng).tolist(), lengths(6, 0.5, 5, rng).tolist()
    assert [r["prompt_len"] for r in record["requests"]] == want_in
    assert [r["output_len"] for r in record["requests"]] == want_out  # ignore_eos: full length
    m = record["metrics"]
    assert (m["completed"], m["failed"]) == (5, 0)
    assert m["total_output_tokens"] == sum(want_out)
    assert m["ttft_ms"] is not None and m["itl_ms"] is not None
    assert all(r["ttft_s"] <= r["e2e_s"] for r in record["requests"])
    assert record["command"].startswith("sglrs bench offline --model-path")
    assert record["server_args"]["load_format"] == "auto"
    assert png.read_bytes().startswith(b"\x89PNG")


def test_shared_prefix_cache_hits_are_counted(engine, capsys):
    args = bench_args(
        "--dataset-name", "shared-prefix", "--gsp-num-groups", "2", "--gsp-prompts-per-group",
        "4", "--gsp-system-prompt-len", "64", "--gsp-question-len", "8", "--gsp-output-len", "4",
        "--warmup-requests", "0",
    )  # fmt: skip
    first = bench_engine(engine, args, ["sglrs", "bench", "offline"])
    m = first["metrics"]
    assert (m["completed"], m["total_input_tokens"], m["total_output_tokens"]) == (8, 576, 32)
    cached = sum(r["cached_tokens"] for r in first["requests"])
    assert m["cache_hit_rate"] == pytest.approx(cached / 576)
    assert m["ttft_ms"] is None  # not streamed
    assert "not measured (no streaming)" in capsys.readouterr().out
    # Without a warmup nothing is flushed: the same prompts again find all but their last token.
    again = bench_engine(engine, args, ["sglrs", "bench", "offline"])["metrics"]
    assert again["total_cached_tokens"] == 576 - 8
    assert again["cache_hit_rate"] == pytest.approx(568 / 576)


def test_sharegpt_file_sends_text(engine, tmp_path):
    conversations = [
        {"conversations": [{"from": "human", "value": f"Question {i}: why is the sky blue?"},
                           {"from": "gpt", "value": "Because of Rayleigh scattering."}]}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conversations))
    args = bench_args("--dataset-name", "sharegpt", "--dataset-path", str(path))
    record = bench_engine(engine, args, ["sglrs", "bench", "offline"])
    tok = engine.tokenizer
    assert record["metrics"]["completed"] == 3
    reply_len = len(tok.encode("Because of Rayleigh scattering."))
    assert all(r["output_len"] == reply_len for r in record["requests"])
    want = sorted(len(tok.encode(c["conversations"][0]["value"])) for c in conversations)
    assert sorted(r["prompt_len"] for r in record["requests"]) == want


def test_bad_flags_are_usage_errors(capsys):
    from sglrs.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "offline", "--page-size", "0"])
    assert exc.value.code == 2 and "--page-size must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # caught before any model is looked for
        main(["bench", "offline", "--model-path", "/nowhere", "--random-range-ratio", "2"])
    assert exc.value.code == 2 and "--random-range-ratio" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench"])
