"""KV pressure end to end: a pool too small for the batch forces retraction (and re-admission
through the radix cache); every request still produces exactly its greedy tokens. Aborts
mid-stream free their KV."""

from __future__ import annotations

import time

import pytest
from tiny_model import tiny_llama_dir

from sglrs.engine.engine import Engine

NEW_TOKENS = 48


@pytest.fixture(scope="module")
def engine():
    with Engine(
        model_path=str(tiny_llama_dir()),
        max_total_tokens=320,
        chunked_prefill_size=32,
        max_running_requests=8,
        log_level="warning",
    ) as eng:
        yield eng


def _prompts(engine: Engine, n: int) -> list[list[int]]:
    return [
        engine.tokenizer.encode(f"Request number {i} asks about topic {i * 7}") for i in range(n)
    ]


def test_retraction_under_a_tiny_pool_keeps_outputs_exact(engine):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}
    prompts = _prompts(engine, 8)
    alone = [engine.generate(input_ids=p, sampling_params=params)["output_ids"] for p in prompts]
    together = engine.generate(input_ids=prompts, sampling_params=params)
    assert [o["output_ids"] for o in together] == alone
    assert sum(o["meta_info"]["num_retractions"] for o in together) > 0
    stats = engine.get_server_info()["stats"]
    assert stats["integrity_ok"] and stats["running"] == 0 and stats["num_retractions"] > 0


def test_closing_a_stream_aborts_the_request_and_frees_its_kv(engine):
    params = {"max_new_tokens": 200, "temperature": 0, "ignore_eos": True}
    stream = engine.generate("A long answer that the client stops reading", params, stream=True)
    next(stream)
    stream.close()  # the client goes away
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = engine.get_server_info()["stats"]
        if stats["running"] == 0 and stats["waiting"] == 0:
            break
        time.sleep(0.05)
    assert stats["running"] == 0 and stats["waiting"] == 0
    assert stats["num_aborted"] >= 1 and stats["integrity_ok"]
    assert stats["free_tokens"] + stats["cached_tokens"] == stats["capacity_tokens"]
