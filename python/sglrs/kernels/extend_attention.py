"""Prefill ("extend") attention over a cached prefix plus the new tokens, causal.

The new tokens' K/V are stored in the pool before this runs, so each request's whole KV is
read through its row of the request-to-token table. One program per (request, query head,
block of new tokens); keys stop at the block's last position (causal) and start at the
sliding window's edge when there is one.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.attention_tile import online_softmax_step, paged_scores


@triton.jit
def _extend_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    out_ptr,
    req_to_token_ptr,
    req_pool_ptr,
    prefix_lens_ptr,
    qo_indptr_ptr,
    sm_scale,
    q_stride_t,
    q_stride_h,
    k_stride_s,
    k_stride_h,
    v_stride_s,
    v_stride_h,
    o_stride_t,
    o_stride_h,
    table_stride,
    window,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    block_m = tl.program_id(2)
    qo_start = tl.load(qo_indptr_ptr + b).to(tl.int64)
    ext_len = (tl.load(qo_indptr_ptr + b + 1) - qo_start).to(tl.int32)
    if block_m * BLOCK_M >= ext_len:
        return
    prefix = tl.load(prefix_lens_ptr + b).to(tl.int32)
    row = tl.load(req_pool_ptr + b).to(tl.int64)
    kv_head = h // GROUP

    offs_m = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < ext_len
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q = tl.load(
        q_ptr + (qo_start + offs_m)[:, None] * q_stride_t + h * q_stride_h + offs_d[None, :],
        mask=mask_m[:, None] & mask_d[None, :],
        other=0.0,
    )
    q_pos = prefix + offs_m
    kv_end = tl.minimum(prefix + (block_m + 1) * BLOCK_M, prefix + ext_len)
    kv_start = 0
    if window > 0:
        kv_start = tl.maximum(prefix + block_m * BLOCK_M - window + 1, 0)
        kv_start = kv_start // BLOCK_N * BLOCK_N

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(kv_start, kv_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < kv_end
        qk, slots = paged_scores(
            q, k_ptr, req_to_token_ptr, row, table_stride, offs_n, mask_n, kv_head, k_stride_s,
            k_stride_h, offs_d, mask_d, sm_scale, DOT_PRECISION,
        )  # fmt: skip
        valid = mask_n[None, :] & (offs_n[None, :] <= q_pos[:, None])
        if window > 0:
            valid &= q_pos[:, None] - offs_n[None, :] < window
        qk = tl.where(valid, qk, float("-inf"))
        m, l_sum, acc = online_softmax_step(
            qk, m, l_sum, acc, v_ptr, slots, mask_n, kv_head, v_stride_s, v_stride_h, offs_d,
            mask_d, DOT_PRECISION,
        )  # fmt: skip

    o = acc / tl.where(l_sum > 0, l_sum, 1.0)[:, None]
    tl.store(
        out_ptr + (qo_start + offs_m)[:, None] * o_stride_t + h * o_stride_h + offs_d[None, :],
        o.to(out_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_d[None, :],
    )


def extend_attention(
    q: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    out: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    prefix_lens: torch.Tensor,
    qo_indptr: torch.Tensor,
    max_extend_len: int,
    sm_scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """`q`/`out` `[T, Hq, D]` (new tokens of all requests, `qo_indptr` order); the K/V of
    every position, new ones included, are read from `k_buf`/`v_buf` through the table."""
    t, hq, d = q.shape
    b = req_pool_indices.shape[0]
    if t == 0 or b == 0:
        return out
    group = hq // k_buf.shape[1]
    fp32 = q.dtype == torch.float32
    block_m, block_n = (32, 32) if fp32 or d > 128 else (64, 64)
    grid = (b, hq, triton.cdiv(max_extend_len, block_m))
    _extend_kernel[grid](
        q, k_buf, v_buf, out, req_to_token, req_pool_indices, prefix_lens, qo_indptr, sm_scale,
        q.stride(0), q.stride(1), k_buf.stride(0), k_buf.stride(1), v_buf.stride(0),
        v_buf.stride(1), out.stride(0), out.stride(1), req_to_token.stride(0), window or 0,
        GROUP=group, HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(d)), DOT_PRECISION="ieee" if fp32 else "tf32",
        num_warps=4, num_stages=3,  # 3 stages: 5% faster than 2 on the H100 (attention sweep)
    )  # fmt: skip
    return out
