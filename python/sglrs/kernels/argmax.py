"""Row-wise argmax of float32 logits (greedy sampling) in two short launches: chunks of each
row in parallel, then one program per row over the chunks' maxima. torch's reduction runs a
`[1, 128256]` row in one block of threads (~27 µs on an H200, on the critical path of every
batch-1 decode step); this takes a few µs. First maximum wins, as in torch; NaN counts as the
largest value."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl

BLOCK = 4096


@triton.jit
def _chunk_argmax(
    x_ptr, vals_ptr, idx_ptr, n_cols, stride, CHUNKS: tl.constexpr, BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):  # fmt: skip
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride + offs, mask=offs < n_cols, other=float("-inf"))
    x = tl.where(x != x, float("inf"), x)  # NaN wins, as in torch
    best = tl.argmax(x, 0, tie_break_left=True)
    tl.store(vals_ptr + row * CHUNKS + chunk, tl.max(x, 0))
    tl.store(idx_ptr + row * CHUNKS + chunk, chunk * BLOCK + best)


@triton.jit
def _row_argmax(
    vals_ptr, idx_ptr, out_ptr, CHUNKS: tl.constexpr, BLOCK_C: tl.constexpr, USE_PDL: tl.constexpr
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_C)
    v = tl.load(vals_ptr + row * CHUNKS + offs, mask=offs < CHUNKS, other=float("-inf"))
    j = tl.argmax(v, 0, tie_break_left=True)  # the earliest chunk among equal maxima
    tl.store(out_ptr + row, tl.load(idx_ptr + row * CHUNKS + j).to(tl.int64))


def argmax_rows(x: torch.Tensor) -> torch.Tensor:
    """`x.argmax(dim=-1)` for float32 `x` `[rows, cols]` with a unit column stride."""
    rows, cols = x.shape
    out = torch.empty(rows, dtype=torch.int64, device=x.device)
    if rows == 0:
        return out
    chunks = triton.cdiv(cols, BLOCK)
    vals = torch.empty((rows, chunks), dtype=torch.float32, device=x.device)
    idx = torch.empty((rows, chunks), dtype=torch.int32, device=x.device)
    pdl = use_pdl(x, rows)
    _chunk_argmax[(rows, chunks)](
        x, vals, idx, cols, x.stride(0), CHUNKS=chunks, BLOCK=BLOCK, USE_PDL=pdl, launch_pdl=pdl,
        num_warps=8,
    )  # fmt: skip
    _row_argmax[(rows,)](
        vals, idx, out, CHUNKS=chunks, BLOCK_C=triton.next_power_of_2(chunks), USE_PDL=pdl,
        launch_pdl=pdl, num_warps=1,
    )  # fmt: skip
    return out
