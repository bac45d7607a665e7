"""The push all-reduce kernel (sglrs.kernels.push_all_reduce) as one rank sees it, in one
process: the other ranks' pushes are written into this rank's buffer beforehand, their buffers
are plain local tensors. Checks the sum, the values pushed to every peer (-0.0 sent as +0.0),
the slots marked empty again, and the two halves used in turn by consecutive calls. The real
multi-GPU runs are in tests/distributed/test_tp_gpu.py."""

from __future__ import annotations

import pytest
import torch
from kernel_env import DEVICE, load_kernel

WORLD, RANK, SLOT = 4, 1, 4096


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_one_rank_of_four(dtype: torch.dtype) -> None:
    k = load_kernel("push_all_reduce")
    size = dtype.itemsize
    bits = {2: torch.int16, 4: torch.int32}[size]
    empty = k.EMPTY_BITS[size]
    bufs = tuple(
        torch.full((2 * WORLD * SLOT,), empty, dtype=bits, device=DEVICE) for _ in range(WORLD)
    )
    counts = torch.zeros(k.GRID, dtype=torch.int32, device=DEVICE)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def slot(r: int, half: int, owner: int) -> slice:
        start = (half * WORLD + owner) * SLOT
        return slice(start, start + SLOT)

    for call, numel in enumerate([4096, 3 * 577, 128, 1]):
        xs = [torch.randn(numel, generator=gen).to(dtype).to(DEVICE) for _ in range(WORLD)]
        xs[RANK][0] = -0.0
        half = call % 2
        for r in range(WORLD):  # the peers' pushes into this rank's buffer
            if r != RANK:
                bufs[RANK][slot(RANK, half, r)][:numel] = xs[r].view(bits)
        out = torch.empty(numel, dtype=dtype, device=DEVICE)
        k.push_all_reduce(xs[RANK], out, bufs, counts, SLOT, RANK)
        want = sum(x.float() for x in xs).to(dtype)
        # The interpreter rounds float32 -> bf16 by truncation; a GPU rounds to nearest.
        exact = {} if DEVICE.type == "cpu" else {"rtol": 0, "atol": 0}
        torch.testing.assert_close(out, want, **exact)
        sent = xs[RANK].view(bits).clone()
        sent[sent == empty] = 0
        for r in range(WORLD):
            if r != RANK:
                assert torch.equal(bufs[r][slot(r, half, RANK)][:numel], sent)
                bufs[r].fill_(empty)  # that peer reads and frees its slots
        assert bool((bufs[RANK] == empty).all()), "this rank's slots are empty again"
        assert bool((counts == call + 1).all())
