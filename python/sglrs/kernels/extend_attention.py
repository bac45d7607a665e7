"""Prefill ("extend") attention over a cached prefix plus the new tokens, causal.

One program per (request, query head, block of new tokens). The cached prefix is read through
the request's row of the request-to-token table; the new tokens' K/V straight from the step's
contiguous `k`/`v` (no index loads); key tiles wholly below the block's first query need no
causal mask, only the diagonal ones do; the softmax runs in base 2. On the H100 (12 requests x
700 new tokens, Llama-8B heads, bf16) this reads 1.76x faster than the earlier all-paged form
(0.184 vs 0.323 ms per layer, 263 TFLOP/s; `benches/results/attention_extend_h100.json`) and
lifted the offline benchmark from 8,930-8,978 to 9,034-9,041 output tok/s in one interleaved
run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.attention_tile import paged_scores

LOG2E = 1.4426950408889634
# (new tokens per block, key positions per tile, warps, stages): the best of 20 launch configs
# on the H100 in 16-bit types (`python benches/attention_sweep_h100.py --parts extend`);
# float32 (tests, exact checks) takes smaller tiles.
EXTEND_TILE = (64, 32, 4, 3)
EXTEND_TILE_FP32 = (32, 32, 4, 2)


@triton.jit
def _fold(s, m, l_sum, acc, v, GUARD: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Online softmax in base 2 over one tile of scaled scores `s`."""
    m_new = tl.maximum(m, tl.max(s, 1))
    if GUARD:  # rows that have seen only masked keys so far
        m_new = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m - m_new)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return m_new, l_sum * alpha + tl.sum(p, 1), acc


@triton.jit
def _extend_kernel(
    q_ptr, k_new_ptr, v_new_ptr, k_ptr, v_ptr, out_ptr, req_to_token_ptr, req_pool_ptr,
    prefix_lens_ptr, qo_indptr_ptr, qk_scale, q_stride_t, q_stride_h, kn_stride_t, kn_stride_h,
    vn_stride_t, vn_stride_h, k_stride_s, k_stride_h, v_stride_s, v_stride_h, o_stride_t,
    o_stride_h, table_stride, window,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    first = tl.program_id(2) * BLOCK_M
    qo_start = tl.load(qo_indptr_ptr + b).to(tl.int64)
    ext_len = (tl.load(qo_indptr_ptr + b + 1) - qo_start).to(tl.int32)
    if first >= ext_len:
        return
    prefix = tl.load(prefix_lens_ptr + b).to(tl.int32)
    row = tl.load(req_pool_ptr + b).to(tl.int64)
    kv_head = h // GROUP
    offs_m = first + tl.arange(0, BLOCK_M)
    mask_m = offs_m < ext_len
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q = tl.load(
        q_ptr + (qo_start + offs_m)[:, None] * q_stride_t + h * q_stride_h + offs_d[None, :],
        mask=mask_m[:, None] & mask_d[None, :],
        other=0.0,
    )
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # 1. The cached prefix, through the table (all of it visible, window aside).
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(prefix + first - window + 1, 0) // BLOCK_N * BLOCK_N
    for n0 in range(lo, prefix, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < prefix
        s, slots = paged_scores(
            q, k_ptr, req_to_token_ptr, row, table_stride, offs_n, mask_n, kv_head, k_stride_s,
            k_stride_h, offs_d, mask_d, qk_scale, DOT_PRECISION,
        )  # fmt: skip
        valid = mask_n[None, :]
        if HAS_WINDOW:
            valid &= (prefix + offs_m)[:, None] - offs_n[None, :] < window
        s = tl.where(valid, s, float("-inf"))
        v = tl.load(
            v_ptr + slots[:, None] * v_stride_s + kv_head * v_stride_h + offs_d[None, :],
            mask=mask_n[:, None] & mask_d[None, :],
            other=0.0,
        )
        m, l_sum, acc = _fold(s, m, l_sum, acc, v, True, DOT_PRECISION)

    # 2. New tokens wholly below the block's first query: contiguous, no causal mask.
    kn = k_new_ptr + qo_start * kn_stride_t + kv_head * kn_stride_h
    vn = v_new_ptr + qo_start * vn_stride_t + kv_head * vn_stride_h
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(first - window + 1, 0) // BLOCK_N * BLOCK_N
    full_end = first // BLOCK_N * BLOCK_N
    for n0 in range(lo, full_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        k = tl.load(
            kn + offs_n[None, :] * kn_stride_t + offs_d[:, None], mask=mask_d[:, None], other=0.0
        )
        s = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale
        if HAS_WINDOW:
            s = tl.where(offs_m[:, None] - offs_n[None, :] < window, s, float("-inf"))
        v = tl.load(
            vn + offs_n[:, None] * vn_stride_t + offs_d[None, :], mask=mask_d[None, :], other=0.0
        )
        m, l_sum, acc = _fold(s, m, l_sum, acc, v, HAS_WINDOW, DOT_PRECISION)

    # 3. The diagonal, causal.
    end = tl.minimum(first + BLOCK_M, ext_len)
    for n0 in range(full_end, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        k = tl.load(
            kn + offs_n[None, :] * kn_stride_t + offs_d[:, None],
            mask=mask_n[None, :] & mask_d[:, None],
            other=0.0,
        )
        s = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale
        valid = mask_n[None, :] & (offs_n[None, :] <= offs_m[:, None])
        if HAS_WINDOW:
            valid &= offs_m[:, None] - offs_n[None, :] < window
        s = tl.where(valid, s, float("-inf"))
        v = tl.load(
            vn + offs_n[:, None] * vn_stride_t + offs_d[None, :],
            mask=mask_n[:, None] & mask_d[None, :],
            other=0.0,
        )
        m, l_sum, acc = _fold(s, m, l_sum, acc, v, True, DOT_PRECISION)

    o = acc / tl.where(l_sum > 0, l_sum, 1.0)[:, None]
    tl.store(
        out_ptr + (qo_start + offs_m)[:, None] * o_stride_t + h * o_stride_h + offs_d[None, :],
        o.to(out_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_d[None, :],
    )


def extend_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
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
    tile: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """`q`/`out` `[T, Hq, D]`, `k`/`v` `[T, Hkv, D]` (the new tokens, `qo_indptr` order, last
    dim contiguous); each request's `prefix_lens` cached positions are read from
    `k_buf`/`v_buf` through its table row. `tile`: (block_m, block_n, warps, stages)."""
    t, hq, d = q.shape
    nb = req_pool_indices.shape[0]
    if t == 0 or nb == 0:
        return out
    fp32 = q.dtype == torch.float32
    block_m, block_n, warps, stages = tile or (EXTEND_TILE_FP32 if fp32 else EXTEND_TILE)
    _extend_kernel[(nb, hq, triton.cdiv(max_extend_len, block_m))](
        q, k, v, k_buf, v_buf, out, req_to_token, req_pool_indices, prefix_lens, qo_indptr,
        sm_scale * LOG2E, q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0),
        v.stride(1), k_buf.stride(0), k_buf.stride(1), v_buf.stride(0), v_buf.stride(1),
        out.stride(0), out.stride(1), req_to_token.stride(0), window or 0,
        GROUP=hq // k_buf.shape[1], HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(d)), HAS_WINDOW=bool(window),
        DOT_PRECISION="ieee" if fp32 else "tf32", num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return out
