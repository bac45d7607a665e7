"""Custom all-reduces over NVLink for the small tensors of decode steps.

Inside a CUDA graph NCCL's all-reduce of a few KB costs ~15 us, a latency floor that a batch-1
decode step pays twice per layer. Two paths replace it, both over buffers every rank mapped at
start-up (torch symmetric memory; multicast stays off, `NCCL_SAFETY_ENV`, so only
peer-to-peer loads and stores are used):

- up to `PUSH_MAX_BYTES` (decode batches): the push kernel (kernels/push_all_reduce.py), one
  NVLink hop with no barrier: every rank stores its tensor into every rank's buffer and sums
  what arrives in its own;
- above that, up to the per-group-size limit: torch's `one_shot_all_reduce_copy_out` (copy in,
  device-side barrier, read every peer's buffer).

Larger tensors (prefill) keep NCCL: one-shot reads every peer's whole tensor, which the ring
beats past a few hundred KB. `SGLRS_DISABLE_PUSH_ALL_REDUCE=1` sends everything the push path
would take to torch's one-shot instead (to measure what it saves).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from sglrs.kernels.gemv import ReduceNorm

logger = logging.getLogger(__name__)

# Largest tensor sent through the one-shot path. At 2 ranks it beat NCCL up to 4 MiB inside CUDA
# graphs on H200 (2.1x at 8 KiB, 1.6x at 2 MiB, 1.1x at 4 MiB; 0.64x at 16 MiB:
# benches/results/all_reduce_tp.json). With more ranks each reads more peers' bytes, so the
# cut-off stays at 64 rows of a 4096-wide bf16 model until measured.
MAX_BYTES_BY_WORLD_SIZE = {2: 4 * 2**20}
DEFAULT_MAX_BYTES = 512 * 1024
# Largest tensor the push kernel takes: 64 rows of a 4096-wide bf16 model (every rank receives
# every peer's whole tensor, so its NVLink bytes grow with the rank count).
PUSH_MAX_BYTES = 512 * 1024
# The GEMV REDUCE_NORM epilogue's per-column-group scratch: a 16384-wide output in 256-column
# groups.
REDUCE_GROUPS = 64
_VECTOR_BYTES = 16  # the kernel moves 16-byte vectors


def symm_mem_supported() -> bool:
    """Whether this torch build has the peer-to-peer symmetric-memory all-reduce."""
    try:
        import torch.distributed._symmetric_memory  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() and hasattr(torch.ops.symm_mem, "one_shot_all_reduce_copy_out")


class CustomAllReduce:
    """Sums tensors of `dtype` up to `max_bytes` over `group`; build it on every rank at once
    (the buffer's rendezvous is a collective), before any CUDA graph is captured."""

    def __init__(
        self, group: Any, device: torch.device, dtype: torch.dtype, max_bytes: int
    ) -> None:
        import torch.distributed._symmetric_memory as symm_mem

        self.dtype = dtype
        self.max_numel = max_bytes // dtype.itemsize
        self.world_size = dist.get_world_size(group)
        self.group_name = group.group_name
        self.buffer = symm_mem.empty(self.max_numel, dtype=dtype, device=device)
        symm_mem.rendezvous(self.buffer, self.group_name)
        self.push: PushAllReduce | None = None
        if os.environ.get("SGLRS_DISABLE_PUSH_ALL_REDUCE") != "1":
            push_bytes = min(PUSH_MAX_BYTES, max_bytes)
            self.push = PushAllReduce(group, device, dtype, push_bytes)

    def handles(self, x: torch.Tensor) -> bool:
        nbytes = x.numel() * x.element_size()
        return (
            x.dtype == self.dtype
            and x.is_cuda
            and x.is_contiguous()
            and 0 < x.numel() <= self.max_numel
            and nbytes % _VECTOR_BYTES == 0
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over the ranks of `x`, in a new tensor (`x` is left as it was)."""
        if self.push is not None and self.push.handles(x):
            return self.push(x)
        return self.one_shot(x)

    def one_shot(self, x: torch.Tensor) -> torch.Tensor:
        """`self(x)` through torch's one-shot op, whatever the size."""
        out = torch.empty_like(x)
        staging = self.buffer[: x.numel()].view_as(x)
        torch.ops.symm_mem.one_shot_all_reduce_copy_out(staging, x, "sum", self.group_name, out)
        return out

    def self_test(self, device: torch.device) -> bool:
        """Every rank sums ones through each path: each must see `world_size`."""
        ones = torch.ones(_VECTOR_BYTES, dtype=self.dtype, device=device)
        ok = bool((self.one_shot(ones) == self.world_size).all().item())
        if self.push is not None:
            for _ in range(3):  # both halves of the push buffers, and back
                ok = ok and bool((self.push(ones) == self.world_size).all().item())
        return ok


class PushAllReduce:
    """The push kernel's state on this rank: its receive buffer (mapped by every rank), every
    rank's buffer as mapped here, the per-program call counts, and the scratch of the GEMV
    epilogue that shares the protocol (`reduce_norm_epilogue`). Build it on
    every rank at once (a collective), before any CUDA graph is captured."""

    def __init__(
        self, group: Any, device: torch.device, dtype: torch.dtype, max_bytes: int
    ) -> None:
        import torch.distributed._symmetric_memory as symm_mem

        from sglrs.kernels.push_all_reduce import EMPTY_BITS, GRID

        self.dtype = dtype
        self.slot_numel = max_bytes // dtype.itemsize
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        bits = {2: torch.int16, 4: torch.int32}[dtype.itemsize]
        numel = 2 * self.world_size * self.slot_numel
        self.buffer = symm_mem.empty(numel, dtype=bits, device=device)
        self.buffer.fill_(EMPTY_BITS[dtype.itemsize])
        handle = symm_mem.rendezvous(self.buffer, group.group_name)
        # Every rank's buffer, mapped here: at the same offset of its allocation as ours.
        offset = (self.buffer.data_ptr() - handle.buffer_ptrs[handle.rank]) // dtype.itemsize
        self.buffers = tuple(
            handle.get_buffer(r, (numel,), bits, offset) for r in range(self.world_size)
        )
        self.counts = torch.zeros(GRID, dtype=torch.int32, device=device)
        self.sq_stamps = torch.zeros(REDUCE_GROUPS, dtype=torch.int64, device=device)
        torch.cuda.synchronize(device)
        dist.barrier(group)  # every buffer reads empty before any rank pushes into it

    def handles(self, x: torch.Tensor) -> bool:
        return (
            x.dtype == self.dtype
            and x.is_cuda
            and x.is_contiguous()
            and 0 < x.numel() <= self.slot_numel
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from sglrs.kernels.push_all_reduce import push_all_reduce

        out = torch.empty_like(x)
        return push_all_reduce(x, out, self.buffers, self.counts, self.slot_numel, self.rank)

    def handles_rmsnorm(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor
    ) -> bool:
        """Whether `rmsnorm` takes these: rows of `x` and `residual` alike and contiguous, a
        contiguous `[width]` weight of the same dtype."""
        from sglrs.kernels.push_all_reduce import MAX_NORM_WIDTH

        return (
            self.handles(x)
            and x.dim() == 2
            and x.shape[1] <= MAX_NORM_WIDTH
            and residual.shape == x.shape
            and residual.dtype == x.dtype
            and residual.is_contiguous()
            and weight.shape == (x.shape[1],)
            and weight.dtype == x.dtype
            and weight.is_contiguous()
        )

    def rmsnorm(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(weight * rmsnorm(s), s)` for `s = residual + the sum over the ranks of x`."""
        from sglrs.kernels.push_all_reduce import push_all_reduce_rmsnorm

        return push_all_reduce_rmsnorm(
            x, residual, weight, eps, self.buffers, self.counts, self.slot_numel, self.rank
        )

    def reduce_norm_epilogue(
        self, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> ReduceNorm:
        """This state as a GEMV's REDUCE_NORM epilogue (kernels/gemv.py) with the residual and
        RMSNorm that follow the sum."""
        from sglrs.kernels.gemv import ReduceNorm

        return ReduceNorm(
            residual, weight, eps, self.buffers, self.counts, self.sq_stamps, self.slot_numel,
            self.rank,
        )  # fmt: skip
