"""ForwardBatch.from_plan: table writes, KV indices, plan validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from step_plans import PlanBuilder

from sglrs.runner.forward_batch import ForwardBatch, ForwardMode, apply_table_writes


def table() -> torch.Tensor:
    return torch.zeros((8, 64), dtype=torch.int32)


def test_table_writes_and_kv_indices_follow_the_plans():
    b = PlanBuilder(emit_kv_indices=True)
    t = table()
    b.add(1)
    b.add(2)
    fb = ForwardBatch.from_plan(b.step({1: [5, 6, 7], 2: [8]}), t, "cpu")
    assert fb.mode is ForwardMode.EXTEND and fb.num_tokens == 4
    b.add(3, cached_from=(1, 2))
    plan = b.step({1: [9], 2: [10], 3: [11, 12]}, kind="mixed")
    fb = ForwardBatch.from_plan(plan, t, "cpu")
    fb.check_kv_indices(plan)
    for rid, row in zip([1, 2, 3], plan.req_pool_indices, strict=True):
        slots = b.reqs[rid].slots
        assert t[row, : len(slots)].tolist() == slots
    assert fb.kv_indptr_cpu.tolist() == [0, 4, 6, 10]
    assert fb.positions.tolist() == [3, 1, 2, 3]
    assert fb.out_cache_loc.tolist() == plan.out_cache_loc.tolist()
    fb = ForwardBatch.from_plan(b.step({1: [1], 2: [2], 3: [3]}), t, "cpu")
    assert fb.mode.is_decode and fb.seq_lens.tolist() == [5, 3, 5]


def test_rewrite_of_changed_positions():
    """A write over existing positions (a chunk adopting the tree's slots) replaces them."""
    b = PlanBuilder()
    t = table()
    b.add(1)
    plan = b.step({1: [1, 2, 3]})
    ForwardBatch.from_plan(plan, t, "cpu")
    plan.table_rows, plan.table_starts = plan.table_rows[:1], np.array([1], np.int32)
    plan.table_indptr, plan.table_slots = np.array([0, 2], np.int32), np.array([40, 41], np.int32)
    apply_table_writes(plan, t)
    row = int(plan.req_pool_indices[0])
    assert t[row, 1:3].tolist() == [40, 41]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda p: setattr(p, "seq_lens", p.seq_lens + 1), "seq_lens"),
        (lambda p: setattr(p, "positions", p.positions[:-1]), "entries"),
        (lambda p: setattr(p, "table_indptr", p.table_indptr[:-1]), "table writes"),
        (lambda p: setattr(p, "table_rows", p.table_rows + 100), "rows"),
        (lambda p: setattr(p, "kind", "decode"), "decode step"),
        (lambda p: setattr(p, "kind", "verify"), "verify"),
    ],
)
def test_inconsistent_plans_are_rejected(corrupt, message):
    b = PlanBuilder()
    b.add(1)
    plan = b.step({1: [1, 2, 3]})
    corrupt(plan)
    with pytest.raises(ValueError, match=message):
        ForwardBatch.from_plan(plan, table(), "cpu")


def test_sequence_beyond_context_length():
    b = PlanBuilder()
    b.add(1)
    with pytest.raises(ValueError, match="context_length"):
        ForwardBatch.from_plan(b.step({1: list(range(70))}), table(), "cpu")


def test_staged_arrays_start_16_byte_aligned_and_decode_block_matches():
    """Triton specializes on pointer alignment: every staged view starts 16-byte aligned
    whatever the batch's parity, and a decode step's five per-request arrays still form one
    [5, B] block for the CUDA-graph copy."""
    b = PlanBuilder()
    t = table()
    for rid in (1, 2, 3):
        b.add(rid)
    fb = ForwardBatch.from_plan(b.step({1: [5, 6, 7], 2: [8], 3: [4, 4]}), t, "cpu")
    for view in (fb.input_ids, fb.positions, fb.out_cache_loc, fb.seq_lens, fb.qo_indptr):
        assert view.data_ptr() % 16 == 0
    fb = ForwardBatch.from_plan(b.step({1: [1], 2: [2], 3: [3]}), t, "cpu")
    block = fb.decode_block
    assert block is not None and block.shape == (5, 3)
    assert block[0].tolist() == fb.input_ids.tolist() == [1, 2, 3]
    assert block[1].tolist() == fb.positions.tolist()
    assert block[2].tolist() == fb.out_cache_loc.tolist()
    assert block[3].tolist() == fb.req_pool_indices.tolist()
    assert block[4].tolist() == fb.seq_lens.tolist()
