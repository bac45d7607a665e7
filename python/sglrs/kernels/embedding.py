"""The vocab-parallel embedding's lookup in one launch: each token's row of this rank's shard of
the table, or zeros when the id belongs to another rank (the all-reduce after it adds the ranks'
rows). In torch that is ~7 small launches of a decode step's host and device time."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl


@triton.jit
def _shard_embedding_kernel(
    ids_ptr,
    weight_ptr,
    out_ptr,
    start,
    valid,
    hidden,
    weight_stride,
    out_stride,
    BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    local = tl.load(ids_ptr + t).to(tl.int64) - start
    mask = cols < hidden
    local_b = local + tl.zeros_like(cols).to(tl.int64)  # a block, like `mask`
    mine = (local_b >= 0) & (local_b < valid)
    row = tl.load(weight_ptr + local_b * weight_stride + cols, mask=mask & mine, other=0.0)
    tl.store(out_ptr + t * out_stride + cols, row, mask=mask)


def shard_embedding(
    ids: torch.Tensor, weight: torch.Tensor, start: int, valid: int
) -> torch.Tensor:
    """`[T, hidden]`: row `ids[t] - start` of `weight` where `start <= ids[t] < start + valid`,
    else zeros (`ids` int64 `[T]`, `weight` `[rows, hidden]` with a unit column stride)."""
    t, hidden = ids.shape[0], weight.shape[1]
    out = torch.empty((t, hidden), dtype=weight.dtype, device=weight.device)
    if t == 0:
        return out
    block = min(triton.next_power_of_2(hidden), 2048)
    pdl = use_pdl(weight, t)
    _shard_embedding_kernel[(t, triton.cdiv(hidden, block))](
        ids, weight, out, start, valid, hidden, weight.stride(0), out.stride(0), BLOCK=block,
        USE_PDL=pdl, launch_pdl=pdl, num_warps=4,
    )  # fmt: skip
    return out
