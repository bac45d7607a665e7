"""One-kernel all-reduce for decode-sized tensors over NVLink: every rank pushes its tensor
into every rank's receive buffer, then each sums what arrived in its own buffer.

There is no barrier and no flag. A receive slot holds the "empty" mark (-0.0: bits 0x8000
in bf16/fp16, 0x80000000 in fp32) until a peer's value lands there; the pushed values never
carry the mark (a -0.0 is sent as +0.0, which sums the same), so a reader spins on its own
memory until no element of its slots is empty, sums the ranks in rank order in float32 (every
rank gets the same bits) and marks the slots empty again. The whole all-reduce costs one
NVLink hop instead of torch's one-shot op's barrier round trip plus the reads.

Each rank's buffer has two halves, used in turn: a rank writes half `c % 2` in its call `c`,
and a peer can only be one call ahead (it needs this rank's values of call `c` to finish its
own call `c`), so it writes the other half meanwhile. The call count lives in device memory,
one counter per program (only that program reads and writes it), so CUDA-graph replays advance
it; every call runs the same fixed grid, so all counters move together on every rank.

The kernel is launched with PDL (kernels/pdl.py) where that is on: the next kernel (a GEMV)
launches at once and prefetches its weights while this one waits for NVLink.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl

# The "empty" mark, as the integer view of -0.0: 0x8000 for bf16/fp16, 0x80000000 for fp32.
EMPTY_BITS = {2: -(2**15), 4: -(2**31)}
GRID = 32  # programs of every call (fixed: each keeps its own call count)
MAX_BLOCK = 2048


@triton.jit
def _push_all_reduce_kernel(
    x_ptr,
    out_ptr,
    buffers,  # WORLD tensors: every rank's receive buffer (integers of the element's size)
    counts_ptr,  # int32 [GRID]: calls made, per program
    numel,
    slot_numel,  # elements per (half, rank) slot
    RANK: tl.constexpr,
    WORLD: tl.constexpr,
    EMPTY: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)  # before the count too: the previous call wrote it
    pid = tl.program_id(0)
    stride = tl.num_programs(0) * BLOCK
    count = tl.load(counts_ptr + pid)
    half = (count % 2).to(tl.int64)
    mine = buffers[RANK]
    # Push: this rank's values into slot (half, RANK) of every rank's buffer.
    for start in range(pid * BLOCK, numel, stride):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < numel
        v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(mine.dtype.element_ty, bitcast=True)
        v = tl.where(v == EMPTY, tl.zeros_like(v), v)  # -0.0 would read as "not arrived"
        for r in tl.static_range(WORLD):
            tl.store(buffers[r] + (half * WORLD + RANK) * slot_numel + offs, v, mask=mask)
    # Sum: wait for every rank's values in this rank's own buffer, then mark the slots empty.
    for start in range(pid * BLOCK, numel, stride):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < numel
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for r in tl.static_range(WORLD):
            src = mine + (half * WORLD + r) * slot_numel + offs
            v = tl.load(src, mask=mask, other=0, volatile=True)
            while tl.sum(((v == EMPTY) & mask).to(tl.int32), axis=0) > 0:
                v = tl.load(src, mask=mask, other=0, volatile=True)
            acc += v.to(out_ptr.dtype.element_ty, bitcast=True).to(tl.float32)
            tl.store(src, tl.full([BLOCK], EMPTY, mine.dtype.element_ty), mask=mask)
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(counts_ptr + pid, count + 1)


def push_all_reduce(
    x: torch.Tensor,
    out: torch.Tensor,
    buffers: tuple[torch.Tensor, ...],
    counts: torch.Tensor,
    slot_numel: int,
    rank: int,
) -> torch.Tensor:
    """`out` = the sum over the ranks of `x` (contiguous bf16, fp16 or fp32, at most
    `slot_numel` elements). `buffers`: every rank's receive buffer (this rank's mapping of it),
    `2 * world * slot_numel` integers of `x`'s element size, all `EMPTY_BITS` at start; `counts`:
    int32 `[GRID]`, zeros at start. Every rank must make the same calls in the same order."""
    numel, size = x.numel(), x.element_size()
    block = min(MAX_BLOCK, max(128, triton.next_power_of_2(triton.cdiv(numel, GRID))))
    pdl = use_pdl(x, x.shape[0] if x.dim() > 1 else 1)
    _push_all_reduce_kernel[(GRID,)](
        x, out, buffers, counts, numel, slot_numel, RANK=rank, WORLD=len(buffers),
        EMPTY=EMPTY_BITS[size], BLOCK=block, USE_PDL=pdl, launch_pdl=pdl,
        num_warps=1 if block <= 256 else 4,
    )  # fmt: skip
    return out
