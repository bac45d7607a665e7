"""Rotary embedding (HF's half-split layout) applied in place to q and k heads."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl


@triton.jit
def _rope_kernel(
    x_ptr,
    pos_ptr,
    cos_ptr,
    sin_ptr,
    token_stride,
    head_stride,
    cache_stride,
    num_heads,
    HALF: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    offs = tl.arange(0, BLOCK_HALF)
    dmask = offs < HALF
    # The table repeats each frequency in both halves: the first half holds them all.
    cos = tl.load(cos_ptr + pos * cache_stride + offs, mask=dmask, other=0.0)
    sin = tl.load(sin_ptr + pos * cache_stride + offs, mask=dmask, other=0.0)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (heads < num_heads)[:, None] & dmask[None, :]
    base = x_ptr + t * token_stride + heads[:, None] * head_stride + offs[None, :]
    x1 = tl.load(base, mask=mask, other=0.0)
    x2 = tl.load(base + HALF, mask=mask, other=0.0)
    a, b = x1.to(tl.float32), x2.to(tl.float32)
    tl.store(base, (a * cos[None, :] - b * sin[None, :]).to(x1.dtype), mask=mask)
    tl.store(base + HALF, (b * cos[None, :] + a * sin[None, :]).to(x1.dtype), mask=mask)


def rope_inplace(
    x: torch.Tensor, positions: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor
) -> torch.Tensor:
    """Rotate `x` `[T, heads, head_dim]` (any token/head strides, unit last stride) in place
    by `positions` `[T]`, from float32 tables `[max_pos, head_dim]`. Returns `x`."""
    t, heads, dim = x.shape
    if t == 0:
        return x
    if x.stride(-1) != 1 or cos_cache.stride(-1) != 1:
        raise ValueError("rope_inplace needs a unit stride in the head dimension")
    half = dim // 2
    pdl = use_pdl(x, t)
    block_h = min(triton.next_power_of_2(heads), 16)
    _rope_kernel[(t, triton.cdiv(heads, block_h))](
        x, positions, cos_cache, sin_cache, x.stride(0), x.stride(1), cos_cache.stride(0), heads,
        HALF=half, BLOCK_H=block_h, BLOCK_HALF=triton.next_power_of_2(half), USE_PDL=pdl,
        launch_pdl=pdl, num_warps=4,
    )  # fmt: skip
    return x
