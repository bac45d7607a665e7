"""One-kernel all-reduce for decode-sized tensors over NVLink: every rank pushes its tensor
into every rank's receive buffer, then each sums what arrived in its own buffer.

There is no barrier and no flag. A receive slot holds the "empty" mark (-0.0: bits 0x8000
in bf16/fp16, 0x80000000 in fp32) until a peer's value lands there; the pushed values never
carry the mark (a -0.0 is sent as +0.0, which sums the same), so a reader spins on its own
memory until no element of its slots is empty, sums the ranks in float32 in the same order
on every rank (so every rank gets the same bits) and marks the slots empty again. The whole
all-reduce costs one NVLink hop instead of torch's one-shot op's barrier round trip plus the reads.

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
def push_values(v, buffers, offs, mask, slot_numel, half, RANK: tl.constexpr,
                WORLD: tl.constexpr, EMPTY: tl.constexpr, TO_SELF: tl.constexpr):  # fmt: skip
    """Values `v` (the integer view of the element type) at `offs` of slot (half, RANK) of
    every rank's buffer (but this rank's own without TO_SELF); -0.0 goes as +0.0."""
    v = tl.where(v == EMPTY, tl.zeros_like(v), v)  # -0.0 would read as "not arrived"
    for r in tl.static_range(WORLD):
        if TO_SELF or r != RANK:
            tl.store(buffers[r] + (half * WORLD + RANK) * slot_numel + offs, v, mask=mask)


@triton.jit
def _push(x_ptr, buffers, numel, slot_numel, half, pid, RANK: tl.constexpr, WORLD: tl.constexpr,
          EMPTY: tl.constexpr, BLOCK: tl.constexpr, TO_SELF: tl.constexpr):  # fmt: skip
    """This rank's values into slot (half, RANK) of every rank's buffer (but its own without
    TO_SELF), BLOCK-wide chunks taken by the programs in turn."""
    stride = tl.num_programs(0) * BLOCK
    for start in range(pid * BLOCK, numel, stride):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < numel
        v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(buffers[RANK].dtype.element_ty,
                                                            bitcast=True)  # fmt: skip
        push_values(v, buffers, offs, mask, slot_numel, half, RANK, WORLD, EMPTY, TO_SELF)


@triton.jit
def take_sum(mine, x_ptr, offs, mask, slot_numel, half, out_dtype: tl.constexpr,
             RANK: tl.constexpr, WORLD: tl.constexpr, WORLD_P2: tl.constexpr,
             EMPTY: tl.constexpr, SELF_FROM_X: tl.constexpr):  # fmt: skip
    """The ranks' values at `offs` of this rank's slots `mine`, summed in float32 once every one
    has arrived (one load of all the slots per poll, and the same reduction tree on every rank,
    so every rank gets the same bits); the slots are marked empty again. SELF_FROM_X: this
    rank's own term comes from x (it was not pushed to itself)."""
    ranks = tl.arange(0, WORLD_P2)
    polled = ranks < WORLD
    if SELF_FROM_X:
        polled = polled & (ranks != RANK)
        own = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    both = polled[:, None] & mask[None, :]
    src = mine + (half * WORLD + ranks)[:, None] * slot_numel + offs[None, :]
    v = tl.load(src, mask=both, other=0, volatile=True)
    while tl.sum(tl.sum(((v == EMPTY) & both).to(tl.int32), axis=1), axis=0) > 0:
        v = tl.load(src, mask=both, other=0, volatile=True)
    tl.store(src, tl.full(v.shape, EMPTY, mine.dtype.element_ty), mask=both)
    vals = v.to(out_dtype, bitcast=True).to(tl.float32)  # +0.0 where masked off
    if SELF_FROM_X:
        # -0.0 sums as the +0.0 a push would have sent.
        vals = tl.where((ranks == RANK)[:, None], own[None, :], vals)
    return tl.sum(vals, axis=0)


@triton.jit
def take_sum_residual(mine, x_ptr, res_ptr, res_out_ptr, offs, mask, slot_numel, half,
                      dtype: tl.constexpr, RANK: tl.constexpr, WORLD: tl.constexpr,
                      WORLD_P2: tl.constexpr, EMPTY: tl.constexpr,
                      SELF_FROM_X: tl.constexpr):  # fmt: skip
    """`s = residual + take_sum(...)` at `offs`, with the separate ops' roundings (the sum
    rounded to the dtype, then the add), stored to res_out; returns s in float32."""
    r = tl.load(res_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # before the wait
    h = take_sum(mine, x_ptr, offs, mask, slot_numel, half, dtype, RANK, WORLD, WORLD_P2, EMPTY,
                 SELF_FROM_X)  # fmt: skip
    s = (h.to(dtype).to(tl.float32) + r).to(dtype)
    tl.store(res_out_ptr + offs, s, mask=mask)
    return s.to(tl.float32)


@triton.jit
def store_norm(sf, rstd, w_ptr, out_ptr, offs, cols, mask):
    """`w[cols] * (s * rstd)` at `offs` of out, for `s` in float32 and its row's `rstd`, with
    kernels/norm.py's roundings."""
    dtype = out_ptr.dtype.element_ty
    g = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = (sf * rstd).to(dtype).to(tl.float32) * g
    tl.store(out_ptr + offs, y.to(dtype), mask=mask)


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
    WORLD_P2: tl.constexpr,
    EMPTY: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)  # before the count too: the previous call wrote it
    pid = tl.program_id(0)
    count = tl.load(counts_ptr + pid)
    half = (count % 2).to(tl.int64)
    _push(x_ptr, buffers, numel, slot_numel, half, pid, RANK, WORLD, EMPTY, BLOCK, True)
    # Sum: each program takes the chunks it pushed, in this rank's own buffer.
    for start in range(pid * BLOCK, numel, tl.num_programs(0) * BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < numel
        acc = take_sum(buffers[RANK], x_ptr, offs, mask, slot_numel, half,
                       out_ptr.dtype.element_ty, RANK, WORLD, WORLD_P2, EMPTY, False)  # fmt: skip
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(counts_ptr + pid, count + 1)


@triton.jit
def _push_all_reduce_rmsnorm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    res_out_ptr,
    buffers,
    counts_ptr,
    rows,
    width,
    slot_numel,
    eps,
    RANK: tl.constexpr,
    WORLD: tl.constexpr,
    WORLD_P2: tl.constexpr,
    EMPTY: tl.constexpr,
    BLOCK: tl.constexpr,
    ROW_BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    """The all-reduce of `x [rows, width]`, then the residual add and RMSNorm of each row:
    `res_out = sum + res`, `out = w * rmsnorm(res_out)`, with the roundings of the separate ops
    (the sum rounded to the dtype, then kernels/norm.py's). The push is chunked over all the
    programs; each row is summed and normalized by one program (its slots are read by no
    other, so it marks them empty at once, as the plain kernel does). A rank does not push to
    itself here: a row's owner takes its own term from x, so it never waits on another
    program of its own grid (and its own slot stays empty)."""
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    pid = tl.program_id(0)
    count = tl.load(counts_ptr + pid)
    half = (count % 2).to(tl.int64)
    _push(x_ptr, buffers, rows * width, slot_numel, half, pid, RANK, WORLD, EMPTY, BLOCK, False)
    cols = tl.arange(0, ROW_BLOCK)
    mask = cols < width
    dtype = out_ptr.dtype.element_ty
    for row in range(pid, rows, tl.num_programs(0)):
        offs = row * width + cols  # within a slot: far below 2^31
        sf = take_sum_residual(buffers[RANK], x_ptr, res_ptr, res_out_ptr, offs, mask,
                               slot_numel, half, dtype, RANK, WORLD, WORLD_P2, EMPTY,
                               True)  # fmt: skip
        rstd = tl.rsqrt(tl.sum(sf * sf, axis=0) / width + eps)
        store_norm(sf, rstd, w_ptr, out_ptr, offs, cols, mask)
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
        WORLD_P2=triton.next_power_of_2(len(buffers)), EMPTY=EMPTY_BITS[size], BLOCK=block,
        USE_PDL=pdl, launch_pdl=pdl,
        num_warps=1 if block <= 256 else 4,
    )  # fmt: skip
    return out


# Widest row the fused norm takes in one program's registers (Llama-3-70B's is 8192).
MAX_NORM_WIDTH = 16384


def push_all_reduce_rmsnorm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    buffers: tuple[torch.Tensor, ...],
    counts: torch.Tensor,
    slot_numel: int,
    rank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(weight * rmsnorm(s), s)` for `s = residual + the sum over the ranks of x`, `x` and
    `residual` contiguous `[rows, width]` (width at most `MAX_NORM_WIDTH`), in one launch of
    the push kernel's protocol (same buffers and counts, so calls of both kernels interleave)."""
    rows, width = x.shape
    out, res_out = torch.empty_like(x), torch.empty_like(x)
    numel = x.numel()
    block = min(MAX_BLOCK, max(128, triton.next_power_of_2(triton.cdiv(numel, GRID))))
    row_block = triton.next_power_of_2(width)
    pdl = use_pdl(x, rows)
    _push_all_reduce_rmsnorm_kernel[(GRID,)](
        x, residual, weight, out, res_out, buffers, counts, rows, width, slot_numel, eps,
        RANK=rank, WORLD=len(buffers), WORLD_P2=triton.next_power_of_2(len(buffers)),
        EMPTY=EMPTY_BITS[x.element_size()], BLOCK=block,
        ROW_BLOCK=row_block, USE_PDL=pdl, launch_pdl=pdl,
        num_warps=min(16, max(4, row_block // 512)),
    )  # fmt: skip
    return out, res_out
