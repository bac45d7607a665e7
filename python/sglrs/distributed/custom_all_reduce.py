"""One-shot all-reduce through torch symmetric memory, for the small tensors of decode steps.

Inside a CUDA graph NCCL's all-reduce of a few KB costs ~15 us, a latency floor that a batch-1
decode step pays twice per layer. Here every rank copies its input into a buffer that all
ranks mapped at start-up, waits on a device-side barrier, and sums the peers' buffers over
NVLink in one kernel (torch's `symm_mem.one_shot_all_reduce_copy_out`). Multicast stays off
(`NCCL_SAFETY_ENV`), so only peer-to-peer loads are used. Larger tensors (prefill) keep NCCL:
one-shot reads every peer's whole tensor, which the ring beats past a few hundred KB.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# Largest tensor sent through the one-shot path. At 2 ranks it beat NCCL up to 4 MiB inside CUDA
# graphs on H200 (2.1x at 8 KiB, 1.6x at 2 MiB, 1.1x at 4 MiB; 0.64x at 16 MiB:
# benches/results/all_reduce_tp.json). With more ranks each reads more peers' bytes, so the
# cut-off stays at 64 rows of a 4096-wide bf16 model until measured.
MAX_BYTES_BY_WORLD_SIZE = {2: 4 * 2**20}
DEFAULT_MAX_BYTES = 512 * 1024
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
        out = torch.empty_like(x)
        staging = self.buffer[: x.numel()].view_as(x)
        torch.ops.symm_mem.one_shot_all_reduce_copy_out(staging, x, "sum", self.group_name, out)
        return out

    def self_test(self, device: torch.device) -> bool:
        """Every rank sums ones: each must see `world_size`."""
        ones = torch.ones(_VECTOR_BYTES, dtype=self.dtype, device=device)
        return bool((self(ones) == self.world_size).all().item())
