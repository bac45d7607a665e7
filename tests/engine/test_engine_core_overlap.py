"""Overlap scheduling (step N+1 planned and launched before step N's tokens are read): every
request gets the same tokens and finish reasons as without overlap — length, stop tokens, stop
strings, grammar ends, prefill-only requests — and an abort drops at most the step in flight.
The KV pool stays consistent with a step in flight. On the CPU overlap is forced
(`core.overlap = True`): the forward is synchronous there but the protocol is the same. The
GPU runs in float32 so that batches of other sizes (dead rows) cannot flip a greedy choice."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny_model import tiny_llama_dir

from sglrs.engine.engine_core import EngineCore
from sglrs.ipc import messages as msg
from sglrs.server_args import ServerArgs

Result = dict[str, tuple[list[int], Any]]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make_core(overlap: bool) -> EngineCore:
    args = ServerArgs(
        model_path=str(tiny_llama_dir()),
        device=DEVICE,
        dtype="float32",
        max_total_tokens=512,
        random_seed=0,
    )
    core = EngineCore(args)
    core.overlap = overlap
    return core


def drive(
    overlap: bool, requests: list[tuple[str, list[int], dict]], abort: tuple[int, str] | None = None
) -> tuple[Result, int]:
    """Run `requests` to completion; returns each one's tokens and finish reason, and how many
    steps ended with a step still in flight."""
    core = make_core(overlap)
    sent: list[msg.TokenOut] = []
    for rid, prompt, params in requests:
        sent.extend(core.add_request(msg.GenerateReq(rid, prompt, params)))
    steps = ahead = 0
    while core.has_work():
        sent.extend(core.step())
        steps += 1
        ahead += core._inflight is not None
        core.check_integrity()  # holds with a step in flight too
        if abort is not None and steps == abort[0]:
            sent.extend(core.abort(abort[1], False, "stop it"))
    assert not core.has_work()
    core.check_integrity()
    result: Result = {}
    for out in sent:
        tokens, _ = result.get(out.rid, ([], None))
        result[out.rid] = (tokens + list(out.new_token_ids), out.finish_reason)
    core.shutdown()
    return result, ahead


def greedy(n: int, **extra: Any) -> dict[str, Any]:
    return {"max_new_tokens": n, "temperature": 0.0, **extra}


def prompt(i: int) -> list[int]:
    return list(range(10 + i, 40 + i))


def test_lengths_stop_tokens_and_prefill_only_match_plain():
    free, _ = drive(False, [("x", prompt(0), greedy(12, ignore_eos=True))])
    stop_token = free["x"][0][4]  # a token the greedy run samples at position 4
    requests = [
        ("a", prompt(0), greedy(5, ignore_eos=True)),
        ("b", prompt(1), greedy(9, ignore_eos=True)),
        ("c", prompt(2), greedy(1, ignore_eos=True)),
        ("d", prompt(3), greedy(30, ignore_eos=True)),
        ("e", prompt(0), greedy(12, stop_token_ids=[stop_token])),
        ("f", prompt(4), greedy(0)),  # prefill only
    ]
    plain, _ = drive(False, requests)
    overlapped, ahead = drive(True, requests)
    assert overlapped == plain
    assert ahead > 10, "the overlap path was not exercised"
    assert [len(plain[r][0]) for r in "abcdf"] == [5, 9, 1, 30, 0]
    assert plain["e"][1] == {"type": "stop", "matched": stop_token}
    assert len(plain["e"][0]) <= 5


def test_stop_strings_and_grammar_match_plain():
    core = make_core(False)
    free, _ = drive(False, [("x", prompt(0), greedy(16, ignore_eos=True))])
    text = core.tokenizer.decode(free["x"][0])
    core.shutdown()
    stop = text[3:6]
    assert stop.strip(), "the tiny model's text should have a usable stop string"
    requests = [
        ("s", prompt(0), greedy(16, stop=stop)),
        ("g", prompt(1), greedy(24, regex="[a-z]{1,4} [0-9]{2}")),
        ("h", prompt(2), {"max_new_tokens": 20, "temperature": 1.0, "sampling_seed": 7}),
        ("p", prompt(3), greedy(8, ignore_eos=True, frequency_penalty=0.5)),
    ]
    plain, _ = drive(False, requests)
    overlapped, _ = drive(True, requests)
    assert overlapped == plain
    assert plain["s"][1]["matched"] == stop
    assert plain["g"][1]["type"] == "stop"


@pytest.mark.parametrize("at_step", [2, 6])
def test_abort_with_a_step_in_flight_drops_only_its_token(at_step):
    full, _ = drive(False, [("d", prompt(3), greedy(30, ignore_eos=True))])
    requests = [
        ("a", prompt(0), greedy(5, ignore_eos=True)),
        ("d", prompt(3), greedy(30, ignore_eos=True)),
    ]
    plain, _ = drive(False, requests, abort=(at_step, "d"))
    overlapped, _ = drive(True, requests, abort=(at_step, "d"))
    assert overlapped["a"] == plain["a"]
    for result in (plain, overlapped):
        tokens, reason = result["d"]
        assert reason["type"] == "abort"
        assert tokens == full["d"][0][: len(tokens)]
    # The overlapped run had one more step launched, whose token the abort dropped.
    assert len(plain["d"][0]) - 1 <= len(overlapped["d"][0]) <= len(plain["d"][0])
