"""The inner step both attention kernels share: scores of one tile of a request's paged KV,
and the online-softmax update with that tile's values (FlashAttention's running max, sum and
weighted accumulator, in float32)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def paged_scores(
    q,
    k_ptr,
    req_to_token_ptr,
    row,
    table_stride,
    offs_n,
    mask_n,
    kv_head,
    k_stride_s,
    k_stride_h,
    offs_d,
    mask_d,
    sm_scale,
    DOT_PRECISION: tl.constexpr,
):
    """`q @ K^T * sm_scale` over the positions `offs_n` of table row `row`; also returns the
    tile's KV slots (int64)."""
    slots = tl.load(req_to_token_ptr + row * table_stride + offs_n, mask=mask_n, other=0)
    slots = slots.to(tl.int64)
    k = tl.load(
        k_ptr + slots[None, :] * k_stride_s + kv_head * k_stride_h + offs_d[:, None],
        mask=mask_n[None, :] & mask_d[:, None],
        other=0.0,
    )
    return tl.dot(q, k.to(q.dtype), input_precision=DOT_PRECISION) * sm_scale, slots


@triton.jit
def online_softmax_step(
    qk,
    m,
    l_sum,
    acc,
    v_ptr,
    slots,
    mask_n,
    kv_head,
    v_stride_s,
    v_stride_h,
    offs_d,
    mask_d,
    DOT_PRECISION: tl.constexpr,
):
    """Fold one tile (scores `qk`, masked entries -inf) into (max, sum, accumulator)."""
    m_new = tl.maximum(m, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing seen yet
    p = tl.exp(qk - m_safe[:, None])
    alpha = tl.exp(m - m_safe)
    v = tl.load(
        v_ptr + slots[:, None] * v_stride_s + kv_head * v_stride_h + offs_d[None, :],
        mask=mask_n[:, None] & mask_d[None, :],
        other=0.0,
    )
    pv = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION).to(tl.float32)
    return m_new, l_sum * alpha + tl.sum(p, 1), acc * alpha[:, None] + pv
