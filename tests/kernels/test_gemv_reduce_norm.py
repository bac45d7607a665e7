"""The GEMV's REDUCE_NORM epilogue (sglrs.kernels.gemv.gemv_reduce_norm) as one rank of four sees
it, in one process, as tests/kernels/test_push_all_reduce.py does for the push kernel: the other
ranks' terms are written into this rank's buffer beforehand. Checks `s` and the norm against the
separate ops, the values pushed to every peer, the slots and the arrival counter left clean, and
the call counts shared with the push kernel (calls of both interleave). The multi-GPU runs are in
tests/distributed/test_tp_gpu.py."""

from __future__ import annotations

import pytest
import torch
from kernel_env import DEVICE, INTERPRETED, load_kernel

WORLD, RANK, SLOT = 4, 1, 4096
EPS = 1e-5
# Interpreted: float32 and float16 (numpy has no bfloat16); on a GPU the dispatched dtypes.
DTYPES = [torch.float32, torch.float16] if INTERPRETED else [torch.bfloat16, torch.float16]


def _state(dtype: torch.dtype) -> tuple:
    """The push kernel module, the slots' integer dtype and empty mark, every rank's buffer
    (empty), and this rank's call counts and stamped sum-of-squares scratch."""
    push = load_kernel("push_all_reduce")
    bits = {2: torch.int16, 4: torch.int32}[dtype.itemsize]
    empty = push.EMPTY_BITS[dtype.itemsize]
    bufs = tuple(
        torch.full((2 * WORLD * SLOT,), empty, dtype=bits, device=DEVICE) for _ in range(WORLD)
    )
    counts = torch.zeros(push.GRID, dtype=torch.int32, device=DEVICE)
    stamps = torch.zeros(64, dtype=torch.int64, device=DEVICE)
    return push, bits, empty, bufs, counts, stamps


def _slot(half: int, owner: int, numel: int) -> slice:
    start = (half * WORLD + owner) * SLOT
    return slice(start, start + numel)


def _tol(dtype: torch.dtype) -> dict:
    # The float32 sum may group the four terms differently than torch, which a half-precision
    # rounding can turn into one ulp (then carried through the norm).
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 5e-2}


@pytest.mark.parametrize("dtype", DTYPES)
def test_reduce_norm_epilogue_one_rank_of_four(dtype: torch.dtype) -> None:
    gemv = load_kernel("gemv")
    push, bits, empty, bufs, counts, stamps = _state(dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    C = gemv.GemvConfig

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)

    # (config, n, k, silu_mul, then a plain push call): N not a multiple of the tile or of a
    # column group (on a GPU: 256 wide), the SiLU prologue, and the push kernel taking the
    # calls in between.
    cases = [
        (C(4, 64, num_warps=2), 64, 96, False, False),
        (C(8, 32), 37, 100, False, True),
        (C(4, 64, num_warps=2), 48, 64, True, True),
        (C(2, 32), 1000, 32, False, False),
        (C(4, 1024, num_warps=2), 4096, 1024, False, True),
    ]
    call, m = 0, 1
    for cfg, n, k, silu, then_plain in cases:
        x = rand(m, 2 * k if silu else k)
        w, residual, g = rand(n, k), rand(m, n), rand(n)
        own = gemv.gemv_silu_mul(x, w, None, cfg) if silu else gemv.gemv(x, w, None, cfg)
        peers = {r: rand(m, n) for r in range(WORLD) if r != RANK}
        half = call % 2
        for r, t in peers.items():  # the peers' pushes into this rank's buffer
            bufs[RANK][_slot(half, r, m * n)] = t.reshape(-1).view(bits)
        rn = gemv.ReduceNorm(residual, g, EPS, bufs, counts, stamps, SLOT, RANK)
        assert gemv.reduce_norm_fits(rn, x, w, cfg)
        out, s = gemv.gemv_reduce_norm(x, w, cfg, rn, silu_mul=silu)

        total = (own.float() + sum(t.float() for t in peers.values())).to(dtype)
        want_s = (total.float() + residual.float()).to(dtype)
        sf = want_s.float()
        rstd = torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + EPS)
        want = ((sf * rstd).to(dtype).float() * g.float()).to(dtype)
        torch.testing.assert_close(s, want_s, **_tol(dtype))
        torch.testing.assert_close(out, want, **_tol(dtype))
        sent = own.reshape(-1).view(bits).clone()
        sent[sent == empty] = 0
        for r in range(WORLD):
            if r != RANK:
                assert torch.equal(bufs[r][_slot(half, RANK, m * n)], sent)
                bufs[r].fill_(empty)  # that peer reads and frees its slots
        assert bool((bufs[RANK] == empty).all()), "this rank's slots are empty again"
        call += 1
        groups = -(-n // gemv._group_cols(n, DEVICE))
        assert bool((stamps[:groups] >> 32 == call).all()), "each group's sum carries the call"
        assert bool((counts == call).all())
        if then_plain:  # the push kernel's next call uses the other half
            xs = [rand(256) for _ in range(WORLD)]
            for r in range(WORLD):
                if r != RANK:
                    bufs[RANK][_slot(call % 2, r, 256)] = xs[r].view(bits)
            plain = torch.empty(256, dtype=dtype, device=DEVICE)
            push.push_all_reduce(xs[RANK], plain, bufs, counts, SLOT, RANK)
            torch.testing.assert_close(plain, sum(t.float() for t in xs).to(dtype), **_tol(dtype))
            for r in range(WORLD):
                bufs[r].fill_(empty)
            call += 1
            assert bool((counts == call).all())


def test_reduce_norm_refuses_what_it_cannot_take() -> None:
    gemv = load_kernel("gemv")
    dtype = torch.float32
    _, _, _, bufs, counts, stamps = _state(dtype)
    C = gemv.GemvConfig
    x = torch.randn(1, 64, device=DEVICE)
    w = torch.randn(32, 64, device=DEVICE)
    g = torch.randn(32, device=DEVICE)

    def rn(residual: torch.Tensor, scratch: torch.Tensor = stamps) -> object:
        return gemv.ReduceNorm(residual, g, EPS, bufs, counts, scratch, SLOT, RANK)

    good = rn(torch.randn(1, 32, device=DEVICE))
    assert gemv.reduce_norm_fits(good, x, w, C(4, 64))
    assert not gemv.reduce_norm_fits(good, x, w, C(16, 32, use_dot=True))  # the dot tiles
    assert not gemv.reduce_norm_fits(good, x, w, C(4, 32, split_k=2))  # split K
    x2 = torch.randn(2, 64, device=DEVICE)  # one row only
    assert not gemv.reduce_norm_fits(rn(torch.randn(2, 32, device=DEVICE)), x2, w, C(4, 64))
    assert not gemv.reduce_norm_fits(rn(torch.randn(2, 32, device=DEVICE)), x, w, C(4, 64))
    strided = torch.randn(1, 64, device=DEVICE)[:, ::2]
    assert not gemv.reduce_norm_fits(rn(strided), x, w, C(4, 64))
    none = torch.empty(0, dtype=torch.int64, device=DEVICE)  # no scratch for the group's sum
    assert not gemv.reduce_norm_fits(rn(torch.randn(1, 32, device=DEVICE), none), x, w, C(4, 64))
    wide = torch.randn(1, SLOT + 1, device=DEVICE)  # beyond a push slot
    assert not gemv.reduce_norm_fits(
        rn(wide), x, torch.randn(SLOT + 1, 64, device=DEVICE), C(4, 64)
    )
    with pytest.raises(ValueError, match="does not fit"):
        gemv.gemv_reduce_norm(x, w, C(16, 32, use_dot=True), good)
    with pytest.raises(ValueError, match="shapes"):
        gemv.gemv_reduce_norm(x, w, C(4, 64), good, silu_mul=True)  # x is not [gate | up]
