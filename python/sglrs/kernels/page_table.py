"""Page ids of each request's KV, gathered from the request-to-token table on the device
(FlashInfer's `kv_indices`)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _page_table_kernel(
    req_to_token_ptr,
    req_pool_ptr,
    num_pages_ptr,
    start_page_ptr,
    indptr_ptr,
    out_ptr,
    table_stride,
    PAGE_SIZE: tl.constexpr,
    HAS_START: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    row = tl.load(req_pool_ptr + b).to(tl.int64)
    n = tl.load(num_pages_ptr + b).to(tl.int32)
    first = 0
    if HAS_START:
        first = tl.load(start_page_ptr + b).to(tl.int32)
    dst = tl.load(indptr_ptr + b).to(tl.int64)
    for j0 in range(0, n, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        mask = j < n
        slot = tl.load(
            req_to_token_ptr + row * table_stride + (first + j) * PAGE_SIZE, mask=mask, other=0
        )
        tl.store(out_ptr + dst + j, (slot // PAGE_SIZE).to(tl.int32), mask=mask)


def build_page_table(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    num_pages: torch.Tensor,
    indptr: torch.Tensor,
    out: torch.Tensor,
    page_size: int,
    start_pages: torch.Tensor | None = None,
) -> torch.Tensor:
    """`out[indptr[b] + j] = req_to_token[row_b, (start_b + j) * page_size] // page_size` for
    `j < num_pages[b]` (int32). `indptr` must be the exclusive prefix sum of `num_pages`."""
    b = req_pool_indices.shape[0]
    if b == 0:
        return out
    _page_table_kernel[(b,)](
        req_to_token, req_pool_indices, num_pages,
        start_pages if start_pages is not None else num_pages, indptr, out,
        req_to_token.stride(0), PAGE_SIZE=page_size, HAS_START=start_pages is not None,
        BLOCK=256, num_warps=4,
    )  # fmt: skip
    return out
