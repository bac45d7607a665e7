"""Rotary embedding (HF's half-split layout) applied in place to q and k heads; optionally also
storing the rotated k heads and the v heads at the tokens' KV-pool slots (`rope_store`), which
saves a decode step one launch per layer (the separate kv_store) and a re-read of k."""

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
    v_ptr,
    v_stride,
    loc_ptr,
    k_buf_ptr,
    v_buf_ptr,
    buf_stride,
    num_q_heads,
    v_elems,
    HALF: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    STORE: tl.constexpr,
    BLOCK_V: tl.constexpr,
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
    y1 = (a * cos[None, :] - b * sin[None, :]).to(x1.dtype)
    y2 = (b * cos[None, :] + a * sin[None, :]).to(x1.dtype)
    tl.store(base, y1, mask=mask)
    tl.store(base + HALF, y2, mask=mask)
    if STORE:  # the k heads (after the q heads) and, once per token, the v heads
        slot = tl.load(loc_ptr + t).to(tl.int64)
        kmask = mask & (heads >= num_q_heads)[:, None]
        dst = k_buf_ptr + slot * buf_stride + (heads - num_q_heads)[:, None] * (2 * HALF)
        dst += offs[None, :]
        ty = k_buf_ptr.dtype.element_ty
        tl.store(dst, y1.to(ty), mask=kmask)
        tl.store(dst + HALF, y2.to(ty), mask=kmask)
        if tl.program_id(1) == 0:
            vo = tl.arange(0, BLOCK_V)
            vals = tl.load(v_ptr + t * v_stride + vo, mask=vo < v_elems)
            tl.store(v_buf_ptr + slot * buf_stride + vo, vals.to(ty), mask=vo < v_elems)


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
    _launch(x, positions, cos_cache, sin_cache, None)
    return x


def rope_store(
    qk: torch.Tensor,
    num_q_heads: int,
    v: torch.Tensor,
    positions: torch.Tensor,
    cos_cache: torch.Tensor,
    sin_cache: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    loc: torch.Tensor,
) -> None:
    """`rope_inplace` on `qk` `[T, q heads + kv heads, head_dim]`, then `k_buf[loc] =` its
    rotated k heads and `v_buf[loc] = v` (`[T, kv heads, head_dim]`, heads contiguous), in one
    launch. The pool buffers are `[slots, kv heads, head_dim]`, contiguous."""
    t, heads, dim = qk.shape
    if t == 0:
        return
    if qk.stride(-1) != 1 or v.stride(-1) != 1 or v.stride(1) != dim or cos_cache.stride(-1) != 1:
        raise ValueError("rope_store needs unit strides in the head dimension, v heads contiguous")
    if not (k_buf.is_contiguous() and v_buf.is_contiguous() and k_buf.shape == v_buf.shape):
        raise ValueError("rope_store needs contiguous pool buffers of one shape")
    if k_buf.shape[1:] != (heads - num_q_heads, dim) or v.shape[1:] != k_buf.shape[1:]:
        raise ValueError("rope_store: k/v heads do not match the pool's")
    _launch(qk, positions, cos_cache, sin_cache, (num_q_heads, v, k_buf, v_buf, loc))


def _launch(
    x: torch.Tensor,
    positions: torch.Tensor,
    cos_cache: torch.Tensor,
    sin_cache: torch.Tensor,
    store: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> None:
    t, heads, dim = x.shape
    half = dim // 2
    pdl = use_pdl(x, t)
    block_h = min(triton.next_power_of_2(heads), 16)
    if store is None:
        num_q, v, k_buf, v_buf, loc = heads, x, x, x, positions
        v_elems = 0
    else:
        num_q, v, k_buf, v_buf, loc = store
        v_elems = v.shape[1] * dim
    _rope_kernel[(t, triton.cdiv(heads, block_h))](
        x, positions, cos_cache, sin_cache, x.stride(0), x.stride(1), cos_cache.stride(0), heads,
        v, v.stride(0), loc, k_buf, v_buf, k_buf.stride(0) if store else 0, num_q, v_elems,
        HALF=half, BLOCK_H=block_h, BLOCK_HALF=triton.next_power_of_2(half),
        STORE=store is not None, BLOCK_V=triton.next_power_of_2(max(v_elems, 1)), USE_PDL=pdl,
        launch_pdl=pdl, num_warps=4,
    )  # fmt: skip
