"""Overlap mode: a step's outputs are sent during the next step (through `emit`), and every
request gets the same tokens and finish reasons as without overlap, aborts included."""

from __future__ import annotations

import pytest
from tiny_model import tiny_llama_dir

from sglrs.engine.engine_core import EngineCore
from sglrs.ipc import messages as msg
from sglrs.server_args import ServerArgs


def drive(overlap: bool, device: str) -> dict[str, tuple[list[int], str]]:
    args = ServerArgs(
        model_path=str(tiny_llama_dir()), device=device, max_total_tokens=512, random_seed=0
    )
    core = EngineCore(args)
    core.overlap = overlap
    sent: list[msg.TokenOut] = []
    core.emit = sent.extend
    lengths = {"a": 5, "b": 9, "c": 1, "d": 30}
    for i, (rid, n) in enumerate(lengths.items()):
        params = {"max_new_tokens": n, "temperature": 0.0, "ignore_eos": True}
        sent.extend(core.add_request(msg.GenerateReq(rid, list(range(10 + i, 40)), params)))
    steps = 0
    while core.has_work():
        sent.extend(core.step())
        steps += 1
        if steps == 6:
            sent.extend(core.abort("d", False, "stop it"))
    core.check_integrity()
    result: dict[str, tuple[list[int], str]] = {}
    for out in sent:
        tokens, _ = result.get(out.rid, ([], ""))
        tokens = tokens + list(out.new_token_ids)
        result[out.rid] = (tokens, out.finish_reason["type"] if out.finish_reason else "")
    return result


@pytest.mark.parametrize("device", ["cpu"])
def test_overlap_gives_the_same_outputs(device):
    plain, overlapped = drive(False, device), drive(True, device)
    assert plain == overlapped
    assert [len(plain[r][0]) for r in "abc"] == [5, 9, 1]
    assert plain["d"][1] == "abort" and 0 < len(plain["d"][0]) < 30
