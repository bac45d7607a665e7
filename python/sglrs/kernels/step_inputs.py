"""A step's two device-side input edits in one launch: the request-to-token table writes of the
plan, and the placeholder input ids of a plan made ahead (overlap scheduling) replaced by the
previous step's sampled ids. In torch these are ~7 small launches, host time that a batch-1
decode step under tensor parallelism pays on every rank before its graph replay.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit(do_not_specialize=["num_ids", "num_prev", "num_writes", "table_stride"])
def _step_inputs_kernel(
    ids_ptr,
    num_ids,
    prev_ptr,
    num_prev,
    table_ptr,
    table_stride,
    rows_ptr,
    cols_ptr,
    slots_ptr,
    num_writes,
    FILL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if FILL:  # placeholder -(j + 1) -> prev[j]
        in_ids = offs < num_ids
        ids = tl.load(ids_ptr + offs, mask=in_ids, other=0)
        hole = in_ids & (ids < 0)
        j = tl.minimum(tl.maximum(-ids - 1, 0), num_prev - 1)
        prev = tl.load(prev_ptr + j, mask=hole, other=0)
        tl.store(ids_ptr + offs, prev, mask=hole)
    in_writes = offs < num_writes
    rows = tl.load(rows_ptr + offs, mask=in_writes, other=0)
    cols = tl.load(cols_ptr + offs, mask=in_writes, other=0)
    slots = tl.load(slots_ptr + offs, mask=in_writes, other=0)
    dst = table_ptr + rows * table_stride + cols
    tl.store(dst, slots.to(table_ptr.dtype.element_ty), mask=in_writes)


def apply_step_inputs(
    input_ids: torch.Tensor,
    prev_tokens: torch.Tensor | None,
    table: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    slots: torch.Tensor,
) -> None:
    """`table[rows[w], cols[w]] = slots[w]` for every write `w`, and, with `prev_tokens`, each
    `input_ids[i] < 0` replaced by `prev_tokens[-input_ids[i] - 1]`, in place (int64 inputs on
    the table's CUDA device; bounds were checked on the host)."""
    fill = prev_tokens is not None
    prev = prev_tokens if prev_tokens is not None else input_ids
    n = max(input_ids.numel() if fill else 0, slots.numel())
    if n == 0:
        return
    _step_inputs_kernel[(triton.cdiv(n, BLOCK),)](
        input_ids, input_ids.numel(), prev, max(prev.numel(), 1), table, table.stride(0), rows,
        cols, slots, slots.numel(), FILL=fill, BLOCK=BLOCK,
    )  # fmt: skip
