"""Paged decode attention with split-K (flash-decoding) over the request-to-token table.

Stage 1: one program per (request, KV head, split) walks its share of the request's KV
slots, with all query heads of that KV head as one tile (GQA reads each K/V once). Programs
take requests in the order `order` gives (longest first: the long ones start in the first
wave instead of running alone at the end). Stage 2 merges the splits by their log-sum-exp
(with one split, stage 1 writes the output itself).
The split count depends only on the batch size, so a CUDA graph captured for a batch size
stays valid for any sequence lengths.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.attention_tile import online_softmax_step, paged_scores
from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl


@triton.jit
def _decode_stage1(
    q_ptr,
    k_ptr,
    v_ptr,
    req_to_token_ptr,
    req_pool_ptr,
    seq_lens_ptr,
    order_ptr,
    mid_o_ptr,
    mid_lse_ptr,
    out_ptr,
    sm_scale,
    q_stride_b,
    q_stride_h,
    k_stride_s,
    k_stride_h,
    v_stride_s,
    v_stride_h,
    table_stride,
    out_stride_b,
    out_stride_h,
    window,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    b = tl.load(order_ptr + tl.program_id(0)).to(tl.int64)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + b).to(tl.int32)
    row = tl.load(req_pool_ptr + b).to(tl.int64)
    split_len = tl.cdiv(seq_len, NUM_SPLITS)
    start = split * split_len
    end = tl.minimum(start + split_len, seq_len)
    if window > 0:
        start = tl.maximum(start, seq_len - window)

    offs_h = tl.arange(0, BLOCK_H)
    heads = kv_head * GROUP + offs_h
    mask_h = offs_h < GROUP
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q = tl.load(
        q_ptr + b * q_stride_b + heads[:, None] * q_stride_h + offs_d[None, :],
        mask=mask_h[:, None] & mask_d[None, :],
        other=0.0,
    )
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        qk, slots = paged_scores(
            q, k_ptr, req_to_token_ptr, row, table_stride, offs_n, mask_n, kv_head, k_stride_s,
            k_stride_h, offs_d, mask_d, sm_scale, DOT_PRECISION,
        )  # fmt: skip
        qk = tl.where(mask_n[None, :], qk, float("-inf"))
        m, l_sum, acc = online_softmax_step(
            qk, m, l_sum, acc, v_ptr, slots, mask_n, kv_head, v_stride_s, v_stride_h, offs_d,
            mask_d, DOT_PRECISION,
        )  # fmt: skip

    nonempty = l_sum > 0
    o = acc / tl.where(nonempty, l_sum, 1.0)[:, None]
    if NUM_SPLITS == 1:  # nothing to merge: the final output, no stage 2
        tl.store(
            out_ptr + b * out_stride_b + heads[:, None] * out_stride_h + offs_d[None, :],
            o.to(out_ptr.dtype.element_ty),
            mask=mask_h[:, None] & mask_d[None, :],
        )
        return
    lse = tl.where(nonempty, m + tl.log(tl.where(nonempty, l_sum, 1.0)), float("-inf"))
    # mid_o: [B, Hq, NUM_SPLITS, HEAD_DIM], mid_lse: [B, Hq, NUM_SPLITS], both contiguous.
    hq = tl.num_programs(1) * GROUP
    o_base = (b * hq + heads) * NUM_SPLITS + split
    tl.store(
        mid_o_ptr + o_base[:, None] * HEAD_DIM + offs_d[None, :],
        o,
        mask=mask_h[:, None] & mask_d[None, :],
    )
    tl.store(mid_lse_ptr + o_base, lse, mask=mask_h)


@triton.jit
def _decode_stage2(
    mid_o_ptr,
    mid_lse_ptr,
    out_ptr,
    out_stride_b,
    out_stride_h,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    hq = tl.num_programs(1)
    offs_s = tl.arange(0, BLOCK_S)
    mask_s = offs_s < NUM_SPLITS
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    base = (b * hq + h) * NUM_SPLITS
    lse = tl.load(mid_lse_ptr + base + offs_s, mask=mask_s, other=float("-inf"))
    w = tl.exp(lse - tl.max(lse, 0))
    w = tl.where(mask_s, w, 0.0)
    o = tl.load(
        mid_o_ptr + (base + offs_s)[:, None] * HEAD_DIM + offs_d[None, :],
        mask=mask_s[:, None] & mask_d[None, :],
        other=0.0,
    )
    out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
    tl.store(
        out_ptr + b * out_stride_b + h * out_stride_h + offs_d,
        out.to(out_ptr.dtype.element_ty),
        mask=mask_d,
    )


# (KV positions per tile, warps, pipeline stages) by split count. Large batches run one split:
# on the H100 (batch 512, lengths uniform in [129, 1281), 8 KV heads of 128, bf16, longest
# request first) 64/4/4 reads the KV at 2.91 TB/s against 2.69 for 32/4/2 and a copy
# bandwidth of 3.02, the best of 48 launch configs (benches/attention_sweep_h100.py, results
# in benches/results/attention_sweep_h100.json). Small batches split each request into
# short runs that fit one 32-position tile, where deeper pipelines only add latency.
DECODE_TILE_ONE_SPLIT = (64, 4, 4)
DECODE_TILE_SPLIT = (32, 4, 2)


def num_decode_splits(batch_size: int, num_kv_heads: int, num_sms: int = 132) -> int:
    """Enough programs to fill the GPU about twice, at most 16 splits per request."""
    want = triton.cdiv(2 * num_sms, max(batch_size * num_kv_heads, 1))
    return int(min(16, max(1, triton.next_power_of_2(want))))


def longest_first(seq_lens: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The batch's rows by descending length, on the device (no host sync; `out` keeps a
    CUDA graph's buffer)."""
    order = torch.argsort(seq_lens, descending=True)
    if out is None:
        return order
    return out[: order.numel()].copy_(order)


class DecodeWorkspace:
    """Split-K scratch for up to `max_batch` requests (reused so CUDA graphs see fixed
    addresses)."""

    def __init__(
        self, max_batch: int, num_heads: int, head_dim: int, max_splits: int, device: torch.device
    ) -> None:
        self.mid_o = torch.empty(
            (max_batch * num_heads * max_splits * head_dim,), dtype=torch.float32, device=device
        )
        self.mid_lse = torch.empty(
            (max_batch * num_heads * max_splits,), dtype=torch.float32, device=device
        )
        self.max_batch, self.max_splits = max_batch, max_splits


def decode_attention(
    q: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    out: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float,
    num_splits: int,
    workspace: DecodeWorkspace,
    window: int | None = None,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """One query token per request. `q`/`out` `[B, Hq, D]`; `k_buf`/`v_buf` `[slots, Hkv, D]`;
    request `b` attends to slots `req_to_token[req_pool_indices[b], :seq_lens[b]]`. `order`:
    a permutation of `0..B-1`, the order programs take the requests in (default: as given;
    `longest_first(seq_lens)` balances mixed lengths)."""
    b, hq, d = q.shape
    hkv = k_buf.shape[1]
    if b == 0:
        return out
    if b > workspace.max_batch or num_splits > workspace.max_splits:
        raise ValueError("decode_attention: batch or splits exceed the workspace")
    group = hq // hkv
    mid_o = workspace.mid_o[: b * hq * num_splits * d]
    mid_lse = workspace.mid_lse[: b * hq * num_splits]
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    if order is None:
        order = torch.arange(b, device=q.device)
    pdl = use_pdl(q, b)
    block_n, warps, stages = DECODE_TILE_ONE_SPLIT if num_splits == 1 else DECODE_TILE_SPLIT
    _decode_stage1[(b, hkv, num_splits)](
        q, k_buf, v_buf, req_to_token, req_pool_indices, seq_lens, order, mid_o, mid_lse, out,
        sm_scale,
        q.stride(0), q.stride(1), k_buf.stride(0), k_buf.stride(1), v_buf.stride(0),
        v_buf.stride(1), req_to_token.stride(0), out.stride(0), out.stride(1), window or 0,
        GROUP=group, HEAD_DIM=d, NUM_SPLITS=num_splits,
        BLOCK_H=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(d)), DOT_PRECISION=precision,
        USE_PDL=pdl, launch_pdl=pdl, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    if num_splits == 1:
        return out
    _decode_stage2[(b, hq)](
        mid_o, mid_lse, out, out.stride(0), out.stride(1),
        HEAD_DIM=d, NUM_SPLITS=num_splits, BLOCK_S=triton.next_power_of_2(num_splits),
        BLOCK_D=triton.next_power_of_2(d), USE_PDL=pdl, launch_pdl=pdl, num_warps=4,
    )  # fmt: skip
    return out
