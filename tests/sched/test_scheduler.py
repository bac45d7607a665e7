"""The Python API of the scheduler: config, validation, plan shapes, finish reasons."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sglrs.sched import (
    Finished,
    FinishReason,
    Scheduler,
    SchedulerConfig,
    StepPlan,
    apply_table_writes,
)


def make(**kw: object) -> Scheduler:
    kw.setdefault("capacity_tokens", 256)
    kw.setdefault("context_length", 128)
    return Scheduler(**kw)


def test_dataclass_defaults_mirror_rust() -> None:
    cfg = dataclasses.asdict(SchedulerConfig(capacity_tokens=1000))
    assert cfg == Scheduler.default_config(1000)


def test_config_sources_and_errors() -> None:
    s = Scheduler(SchedulerConfig(capacity_tokens=64, page_size=4), schedule_policy="lpm")
    assert s.config["page_size"] == 4 and s.config["schedule_policy"] == "lpm"
    assert (
        Scheduler({"capacity_tokens": 64, "chunked_prefill_size": 0}).config["chunked_prefill_size"]
        == -1
    )
    with pytest.raises(ValueError, match="capacity_tokens is required"):
        Scheduler()
    with pytest.raises(ValueError, match="unknown scheduler config field .bogus."):
        Scheduler(capacity_tokens=64, bogus=1)
    with pytest.raises(ValueError, match="schedule_policy"):
        Scheduler(capacity_tokens=64, schedule_policy="lifo")
    with pytest.raises(ValueError, match="page_size must be >= 0"):
        Scheduler(capacity_tokens=64, page_size=-1)
    with pytest.raises(ValueError, match="page_size"):
        Scheduler(capacity_tokens=64, page_size=0)
    with pytest.raises(TypeError):
        Scheduler(42)


def test_add_request_validation() -> None:
    s = make()
    s.add_request(1, [1, 2, 3], 4)
    with pytest.raises(ValueError, match="already"):
        s.add_request(1, [1, 2, 3], 4)
    with pytest.raises(ValueError, match="empty prompt"):
        s.add_request(2, [], 4)
    with pytest.raises(ValueError, match="context_length"):
        s.add_request(3, list(range(100)), 29)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        s.add_request(4, [1], -1)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        s.add_request(4, [1], 0)
    with pytest.raises(ValueError, match="id must be >= 0"):
        s.add_request(-5, [1], 1)
    with pytest.raises(ValueError, match="prompt_tokens"):
        s.add_request(6, [1, -2], 1)
    with pytest.raises(ValueError, match="KV pool"):
        make(capacity_tokens=16).add_request(7, list(range(20)), 1)
    assert len(s) == 1


def test_one_request_end_to_end() -> None:
    s = make(emit_kv_indices=True, page_size=4)
    s.add_request(9, np.array([5, 6, 7, 8, 9], dtype=np.int64), 3, eos_token_ids=[2])
    table = np.full((s.config["max_running_requests"], 128), -1, dtype=np.int32)

    plan = s.schedule()
    assert isinstance(plan, StepPlan)
    assert plan.kind == "prefill" and len(plan) == 1
    assert plan.req_ids.dtype == np.uint64 and plan.input_ids.dtype == np.int32
    assert plan.sample_mask.dtype == np.bool_
    assert plan.input_ids.tolist() == [5, 6, 7, 8, 9]
    assert plan.positions.tolist() == [0, 1, 2, 3, 4]
    assert plan.qo_indptr.tolist() == [0, 5]
    assert plan.seq_lens.tolist() == [5] and plan.prefix_lens.tolist() == [0]
    apply_table_writes(table, plan)
    row = int(plan.req_pool_indices[0])
    assert table[row, :5].tolist() == plan.out_cache_loc.tolist() == plan.kv_indices.tolist()
    ids, reasons, matched = s.update(np.array([11]))
    assert ids.size == 0 and reasons.dtype == np.uint8 and matched.dtype == np.int32

    plan = s.schedule()
    assert plan.kind == "decode" and plan.input_ids.tolist() == [11]
    assert plan.positions.tolist() == [5] and plan.prefix_lens.tolist() == [5]
    apply_table_writes(table, plan)
    assert table[row, :6].tolist() == plan.kv_indices.tolist()
    done = Finished(*s.update([2]))
    assert done.ids.tolist() == [9]
    assert done.reasons.tolist() == [FinishReason.STOP_TOKEN]
    assert done.matched_token_ids.tolist() == [2]

    plan = s.schedule()
    assert plan.kind == "idle" and plan.finished_ids.tolist() == [9]
    assert plan.kv_indptr.tolist() == [0]
    s.update([])
    s.check_integrity()
    st = s.stats()
    assert st["num_finished"] == 1 and st["cached_tokens"] == 4
    assert s.flush_cache()
    assert s.stats()["free_tokens"] == 256


def test_protocol_errors_and_abort() -> None:
    s = make()
    with pytest.raises(RuntimeError, match="update"):
        s.update([])
    s.add_request(1, [1, 2, 3], 2)
    s.add_request(2, [1, 2, 4], 2)
    assert s.abort(2) is True
    assert s.abort(2) is False
    assert s.abort(12345) is False
    assert s.abort(-1) is False
    plan = s.schedule()
    with pytest.raises(RuntimeError, match="schedule"):
        s.schedule()
    with pytest.raises(ValueError, match="expected 1 tokens"):
        s.update([1, 2])
    with pytest.raises(ValueError, match="finished flags"):
        s.update([1], [True, False])
    assert not s.flush_cache()
    ids, reasons, _ = s.update([7], np.array([True]))
    # The abort of 2 is reported with this update, and 1 finished in Python.
    assert dict(zip(ids.tolist(), reasons.tolist(), strict=True)) == {
        2: FinishReason.ABORT,
        1: FinishReason.PYTHON_FINISH,
    }
    assert plan.kv_indices is None
    plan = s.schedule()
    assert plan.finished_ids.tolist() == [1]
    s.update([])
    s.check_integrity()


def test_length_finish_and_ignore_eos() -> None:
    s = make()
    s.add_request(3, [4, 4, 4], 2, ignore_eos=True, eos_token_ids=[0])
    s.schedule()
    s.update([0])
    s.schedule()
    ids, reasons, matched = s.update([0])
    assert ids.tolist() == [3] and reasons.tolist() == [FinishReason.LENGTH]
    assert matched.tolist() == [-1]


def test_chunked_prefill_plans() -> None:
    s = make(chunked_prefill_size=4, max_prefill_tokens=4)
    s.add_request(1, list(range(10, 20)), 1)
    extends, samples = [], []
    while True:
        plan = s.schedule()
        if plan.kind == "idle":
            s.update([])
            break
        extends.append(plan.extend_lens.tolist())
        samples.append(plan.sample_mask.tolist())
        s.update([1] * plan.num_sampled)
        s.check_integrity()
    assert extends == [[4], [4], [2]]
    assert samples == [[False], [False], [True]]


def test_equal_table_write_arrays_are_one_array() -> None:
    """Table writes that are exactly the new tokens' slots reuse the per-token arrays; a request
    that adopted cached slots gets its own table writes."""
    s = make()
    head = list(range(10, 30))
    for rid in range(2):
        s.add_request(rid, [*head, 100 + rid], 3)
    plan = s.schedule()
    assert plan.table_slots is plan.out_cache_loc
    assert plan.table_rows is plan.req_pool_indices
    assert plan.table_starts is plan.prefix_lens and plan.table_indptr is plan.qo_indptr
    s.update(np.full(plan.num_sampled, 5, dtype=np.int32))
    plan = s.schedule()  # request 1 adopted request 0's slots for the head: rewritten
    assert plan.kind == "decode"
    assert plan.table_slots is not plan.out_cache_loc and plan.table_starts.tolist() == [21, 0]
    assert plan.table_indptr.tolist() == [0, 1, 23]
    assert plan.table_rows is plan.req_pool_indices


def test_large_plan_arrays_stay_valid_while_held() -> None:
    """Plans' large arrays reuse buffers that earlier plans' arrays gave back once freed: an
    array still held must keep its contents while later steps run, and a freed one is reused
    without leaking into live plans."""
    s = Scheduler(capacity_tokens=40_000, context_length=4_200, max_prefill_tokens=40_000)
    held = []
    for rid in range(6):
        s.add_request(rid, np.arange(4_000) + rid * 7 + 3, 2)
        plan = s.schedule()
        assert plan.kind == "prefill" and plan.num_tokens == 4_000
        copies = {
            k: getattr(plan, k).copy()
            for k in ("input_ids", "positions", "out_cache_loc", "table_slots")
        }
        held.append((plan, copies))
        s.update(np.full(plan.num_sampled, 5, dtype=np.int32))
        if rid % 2:
            held.pop(0)  # freed: its buffers go back for reuse
        for p, c in held:
            for k, v in c.items():
                np.testing.assert_array_equal(getattr(p, k), v)
    assert np.array_equal(held[-1][1]["input_ids"], np.arange(4_000) + 5 * 7 + 3)
    s.check_integrity()
