"""Store one layer's new K and V at their pool slots in one launch."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl


@triton.jit
def _kv_store_kernel(
    k_ptr,
    v_ptr,
    loc_ptr,
    k_buf_ptr,
    v_buf_ptr,
    k_stride,
    v_stride,
    buf_stride,
    row_elems,
    BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(loc_ptr + t).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < row_elems
    k = tl.load(k_ptr + t * k_stride + offs, mask=mask)
    v = tl.load(v_ptr + t * v_stride + offs, mask=mask)
    tl.store(k_buf_ptr + slot * buf_stride + offs, k.to(k_buf_ptr.dtype.element_ty), mask=mask)
    tl.store(v_buf_ptr + slot * buf_stride + offs, v.to(v_buf_ptr.dtype.element_ty), mask=mask)


def kv_store(
    k_buf: torch.Tensor, v_buf: torch.Tensor, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> None:
    """`k_buf[loc] = k; v_buf[loc] = v` for `[T, heads, dim]` k/v whose heads are contiguous
    (the token stride may be anything, e.g. views into the fused QKV output)."""
    t = k.shape[0]
    if t == 0:
        return
    row = k.shape[1] * k.shape[2]
    for x in (k, v):
        if x.stride(2) != 1 or x.stride(1) != x.shape[2]:
            raise ValueError("kv_store needs each token's heads contiguous")
    block = min(triton.next_power_of_2(row), 1024)
    pdl = use_pdl(k, t)
    _kv_store_kernel[(t, triton.cdiv(row, block))](
        k, v, loc, k_buf, v_buf, k.stride(0), v.stride(0), k_buf.stride(0), row,
        BLOCK=block, USE_PDL=pdl, launch_pdl=pdl, num_warps=4,
    )  # fmt: skip
