"""The plan broadcast buffer: real scheduler plans survive encode/decode exactly."""

from __future__ import annotations

import numpy as np
import pytest

from sglrs.distributed.plan_wire import (
    OP_FORWARD,
    OP_HEARTBEAT,
    OP_STOP,
    PLAN_ARRAYS,
    decode_step,
    encode_heartbeat,
    encode_step,
    encode_stop,
)

core = pytest.importorskip("sglrs._core")


def _plans() -> list:
    sched = core.Scheduler(
        capacity_tokens=256,
        page_size=1,
        max_running_requests=4,
        chunked_prefill_size=8,
        context_length=64,
        emit_kv_indices=True,
    )
    for rid, n in ((1, 13), (2, 5), (3, 20)):
        sched.add_request(rid, np.arange(100, 100 + n, dtype=np.int64), 3, eos_token_ids=[])
    plans = []
    for _ in range(12):
        plan = sched.schedule()
        plans.append(plan)
        sched.update(np.full(int(plan.sample_mask.sum()), 7, dtype=np.int64))
    return plans


def test_scheduler_plans_round_trip():
    plans = _plans()
    assert {p.kind for p in plans} >= {"prefill", "decode"}
    for plan in plans:
        message = decode_step(bytearray(encode_step(plan, [1, 3])))
        assert message.op == OP_FORWARD and message.all_logits_req_ids == [1, 3]
        got = message.plan
        assert got.kind == plan.kind and got.batch_size == plan.batch_size
        assert got.num_tokens == plan.num_tokens
        for name in PLAN_ARRAYS:
            want, have = getattr(plan, name), getattr(got, name)
            if want is None:
                assert have is None
                continue
            assert have.dtype == want.dtype and np.array_equal(have, want), name
            assert have.flags.writeable  # views into the received buffer, usable by torch


def test_optional_arrays_absent_and_control_messages():
    plan = _plans()[0]

    class NoKv:
        def __getattr__(self, name):
            return None if name in ("kv_indptr", "kv_indices") else getattr(plan, name)

    got = decode_step(bytearray(encode_step(NoKv(), []))).plan
    assert got.kv_indptr is None and got.kv_indices is None
    with pytest.raises(AttributeError):
        _ = got.no_such_field
    assert decode_step(bytearray(encode_stop())).op == OP_STOP
    assert decode_step(bytearray(encode_heartbeat())).op == OP_HEARTBEAT


def test_trailing_bytes_are_an_error():
    with pytest.raises(ValueError, match="trailing"):
        decode_step(bytearray(encode_step(_plans()[0], [])) + b"\0" * 8)
