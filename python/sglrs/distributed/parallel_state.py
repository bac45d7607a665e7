"""This process's tensor-parallel rank and its process groups.

Two groups over the same ranks: `device_group` carries the model's tensors (NCCL on CUDA, gloo
on the CPU) and `cpu_group` (always gloo) carries host byte buffers such as each step's plan, so
the plan never takes a device round trip. Layers read the rank and size at construction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# Set before every NCCL init: NVLink multicast (NVLS) and symmetric-memory multicast can put the
# GPUs of a shared multi-GPU host out of service.
NCCL_SAFETY_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
# Followers wait in the plan broadcast for as long as the server is idle, so the control
# group's timeout must outlast any idle period; a dead peer still fails it at once (its socket
# closes).
CONTROL_TIMEOUT = timedelta(days=30)
DEVICE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class TPGroup:
    rank: int
    size: int
    device: torch.device
    device_group: Any
    cpu_group: Any


_TP: TPGroup | None = None


def init_tensor_parallel(
    rank: int, size: int, init_addr: str, device: torch.device | str
) -> TPGroup:
    """Join the `size`-rank group rendezvousing at `init_addr` (host:port of rank 0)."""
    global _TP
    if _TP is not None:
        raise RuntimeError("tensor parallelism is already initialized in this process")
    device = torch.device(device)
    os.environ.update(NCCL_SAFETY_ENV)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{init_addr}",
        world_size=size,
        rank=rank,
        timeout=DEVICE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )
    ranks = list(range(size))
    device_group = dist.group.WORLD
    cpu_group = dist.new_group(ranks, backend="gloo", timeout=CONTROL_TIMEOUT)
    _TP = TPGroup(rank, size, device, device_group, cpu_group)
    return _TP


def get_tp_group() -> TPGroup | None:
    return _TP


def get_tp_rank() -> int:
    return 0 if _TP is None else _TP.rank


def get_tp_size() -> int:
    return 1 if _TP is None else _TP.size


def destroy_tensor_parallel() -> None:
    global _TP
    if _TP is None:
        return
    _TP = None
    from sglrs.distributed.comm import disable_custom_all_reduce  # comm imports this module

    disable_custom_all_reduce()  # its symmetric buffer belongs to the group being destroyed
    if dist.is_initialized():
        dist.destroy_process_group()
