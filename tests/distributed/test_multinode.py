"""`--tp-size 2` over gloo, served by two "nodes" on one host: two `sglrs serve` launches (node
ranks 0 and 1) meeting on a loopback `--dist-init-addr`. Node 0 serves HTTP and runs TP rank 0;
node 1 runs TP rank 1 only. Greedy tokens and prompt logprobs equal the tp 1 Engine's, for a
concurrent batch with 16-token prefill chunks (so chunked prefill, decode and every-position
logits all cross the plan broadcast). Killing rank 1 then makes node 0 exit instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tiny_model import tiny_llama_dir

from sglrs.engine.engine import Engine
from sglrs.ipc.ports import free_tcp_port

PROMPTS = [
    "The quick brown fox",
    "A much longer prompt that is split over several prefill chunks of sixteen tokens, so the "
    "follower rank sees chunked prefill plans as well as decodes.",
    "1 2 3 4",
]
GREEDY = {"max_new_tokens": 10, "temperature": 0}
CHUNK = "16"
STARTUP_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 60.0


def _launch(node_rank: int, addr: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "sglrs.cli", "serve", "--model-path", str(tiny_llama_dir())]
    cmd += ["--tp-size", "2", "--nnodes", "2", "--node-rank", str(node_rank)]
    cmd += ["--dist-init-addr", addr, "--port", str(port), "--max-total-tokens", "2048"]
    cmd += ["--chunked-prefill-size", CHUNK, "--log-level", "warning", "--random-seed", "0"]
    cmd += ["--dtype", "float32"]  # exact match with tp 1: `auto` is bf16 on AMX CPUs
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def two_nodes():
    logs = Path(tempfile.mkdtemp(prefix="sglrs-2node-"))
    addr, port = f"127.0.0.1:{free_tcp_port()}", free_tcp_port()
    # Node 1 first: its rank waits at the rendezvous until node 0's rank 0 opens it.
    nodes = [_launch(1, addr, port, logs / "node1.log"), _launch(0, addr, port, logs / "node0.log")]
    yield nodes[1], nodes[0], port, logs
    for proc in nodes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in nodes:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _logs(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in logs.iterdir())


def _post(port: int, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/generate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def _outputs(generate: Any) -> tuple[list[list[int]], list[float]]:
    """Greedy ids of the batch, and the first prompt's prompt + output logprobs."""
    outs = generate({"text": PROMPTS, "sampling_params": GREEDY})
    lp = generate(
        {
            "text": PROMPTS[0],
            "sampling_params": GREEDY,
            "return_logprob": True,
            "logprob_start_len": 0,
        }
    )["meta_info"]
    values = [e[0] for e in lp["input_token_logprobs"] + lp["output_token_logprobs"]]
    return [o["output_ids"] for o in outs], [v for v in values if v is not None]


@pytest.fixture
def tp1_outputs(two_nodes):
    """Runs while the two nodes start up."""
    with Engine(
        model_path=str(tiny_llama_dir()),
        dtype="float32",
        max_total_tokens=2048,
        chunked_prefill_size=int(CHUNK),
        log_level="warning",
        random_seed=0,
    ) as engine:

        def generate(body: dict[str, Any]) -> Any:
            body = dict(body)
            return engine.generate(body.pop("text"), body.pop("sampling_params"), **body)

        return _outputs(generate)


def test_two_nodes_match_tp1_then_exit_when_a_rank_dies(two_nodes, tp1_outputs):
    node0, node1, port, logs = two_nodes
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while _get(f"http://127.0.0.1:{port}/health") != 200:
        assert node0.poll() is None and node1.poll() is None, _logs(logs)
        assert time.monotonic() < deadline, "node 0 did not become healthy\n" + _logs(logs)
        time.sleep(0.5)
    tokens, logprobs = _outputs(lambda body: _post(port, body))
    assert tokens == tp1_outputs[0]
    assert all(len(t) == GREEDY["max_new_tokens"] for t in tokens)
    assert len(logprobs) == len(tp1_outputs[1]) > GREEDY["max_new_tokens"]
    assert logprobs == pytest.approx(tp1_outputs[1], abs=1e-4)

    ranks = _children(node1.pid)
    assert ranks, "node 1 runs no rank process\n" + _logs(logs)
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)  # TP rank 1 dies
    # Node 0 notices at its next idle heartbeat and exits; node 1 exits with its rank.
    assert node1.wait(EXIT_TIMEOUT_S) != 0
    assert node0.wait(EXIT_TIMEOUT_S) != 0, _logs(logs)
