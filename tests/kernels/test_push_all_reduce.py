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


def _rank_state(dtype: torch.dtype) -> tuple:
    """The kernel module, the slots' integer dtype and empty mark, every rank's buffer (all
    empty) and the per-program call counts (zero)."""
    k = load_kernel("push_all_reduce")
    size = dtype.itemsize
    bits = {2: torch.int16, 4: torch.int32}[size]
    empty = k.EMPTY_BITS[size]
    bufs = tuple(
        torch.full((2 * WORLD * SLOT,), empty, dtype=bits, device=DEVICE) for _ in range(WORLD)
    )
    return k, bits, empty, bufs, torch.zeros(k.GRID, dtype=torch.int32, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_one_rank_of_four(dtype: torch.dtype) -> None:
    k, bits, empty, bufs, counts = _rank_state(dtype)
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
        # The kernel's float32 sum may group the four terms differently (the same way on every
        # rank: tests/distributed/test_tp_gpu.py), and the interpreter truncates to bf16.
        tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
        torch.testing.assert_close(out, want, **tol)
        sent = xs[RANK].view(bits).clone()
        sent[sent == empty] = 0
        for r in range(WORLD):
            if r != RANK:
                assert torch.equal(bufs[r][slot(r, half, RANK)][:numel], sent)
                bufs[r].fill_(empty)  # that peer reads and frees its slots
        assert bool((bufs[RANK] == empty).all()), "this rank's slots are empty again"
        assert bool((counts == call + 1).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rmsnorm_variant_one_rank_of_four(dtype: torch.dtype) -> None:
    """The fused all-reduce + residual add + RMSNorm, interleaved with plain calls on the same
    buffers and counts: outputs equal the separate ops (the sum rounded to the dtype, then the
    norm kernel's roundings), every peer gets this rank's values, and the slots end empty
    (the fused kernel does not push to its own slot)."""
    k, bits, empty, bufs, counts = _rank_state(dtype)
    gen = torch.Generator(device="cpu").manual_seed(1)
    eps = 1e-5

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)

    # (rows, width, fused): rows above GRID give a program two rows; plain calls in between.
    for call, (rows, width, fused) in enumerate(
        [(1, 512, True), (3, 96, False), (2, 1000, True), (40, 64, True), (1, 128, False)]
    ):
        xs = [rand(rows, width) for _ in range(WORLD)]
        half = call % 2
        for r in range(WORLD):
            if r != RANK:
                start = (half * WORLD + r) * SLOT
                bufs[RANK][start : start + rows * width] = xs[r].reshape(-1).view(bits)
        want = sum(x.float() for x in xs).to(dtype)
        # The sum may group the four terms differently, which a bf16 rounding can turn into one
        # ulp; the interpreter also truncates to bf16 at each rounding.
        tol = (
            {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 5e-2}
        )
        if fused:
            residual, weight = rand(rows, width), rand(width)
            out, res_out = k.push_all_reduce_rmsnorm(
                xs[RANK], residual, weight, eps, bufs, counts, SLOT, RANK
            )
            s = (want.float() + residual.float()).to(dtype)
            rstd = torch.rsqrt(s.float().pow(2).mean(-1, keepdim=True) + eps)
            norm = ((s.float() * rstd).to(dtype).float() * weight.float()).to(dtype)
            torch.testing.assert_close(res_out, s, **tol)
            torch.testing.assert_close(out, norm, **tol)
        else:
            out = torch.empty(rows * width, dtype=dtype, device=DEVICE)
            k.push_all_reduce(xs[RANK].reshape(-1), out, bufs, counts, SLOT, RANK)
            torch.testing.assert_close(out.view(rows, width), want, **tol)
        for r in range(WORLD):
            if r != RANK:
                start = (half * WORLD + RANK) * SLOT
                sent = bufs[r][start : start + rows * width]
                assert torch.equal(sent, xs[RANK].view(bits).reshape(-1))
                bufs[r].fill_(empty)
        assert bool((bufs[RANK] == empty).all()), "this rank's slots are empty again"
        assert bool((counts == call + 1).all())
