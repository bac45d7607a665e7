"""The step-inputs kernel (sglrs.kernels.step_inputs): table writes and placeholder ids in one
launch give what the torch ops of ForwardBatch.from_plan give."""

from __future__ import annotations

import pytest
import torch
from kernel_env import DEVICE, load_kernel


@pytest.mark.parametrize("fill", [False, True])
@pytest.mark.parametrize("num_writes", [0, 1, 37, 1500])
def test_matches_torch(fill: bool, num_writes: int) -> None:
    k = load_kernel("step_inputs")
    gen = torch.Generator().manual_seed(num_writes)
    table = torch.randint(0, 1000, (9, 2000), generator=gen, dtype=torch.int32)
    rows = torch.randint(0, 9, (num_writes,), generator=gen)
    cols = torch.randperm(2000, generator=gen)[:num_writes]  # distinct cells: one winner each
    slots = torch.randint(0, 1 << 20, (num_writes,), generator=gen)
    ids = torch.randint(0, 50000, (1200,), generator=gen)
    prev = torch.randint(0, 50000, (40,), generator=gen)
    ids[::3] = -(torch.arange(0, 1200, 3) % 40) - 1  # placeholders -(j + 1)
    want_table, want_ids = table.clone(), ids.clone()
    want_table[rows, cols] = slots.to(torch.int32)
    if fill:
        want_ids = torch.where(ids < 0, prev[(-ids - 1).clamp(min=0)], ids)
    table, ids = table.to(DEVICE), ids.to(DEVICE)
    k.apply_step_inputs(
        ids, prev.to(DEVICE) if fill else None, table, rows.to(DEVICE), cols.to(DEVICE),
        slots.to(DEVICE),
    )  # fmt: skip
    assert torch.equal(table.cpu(), want_table)
    assert torch.equal(ids.cpu(), want_ids)
