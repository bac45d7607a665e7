"""Collectives over the tensor-parallel group; identity when there is none (tp 1).

All-reduce and all-gather go through torch.distributed on the device group, so with NCCL they
can be captured in a CUDA graph; small all-reduces take the custom NVLink kernels once
`enable_custom_all_reduce` has set them up (custom_all_reduce.py), and so does
`broadcast_ids_from_first`. `broadcast_bytes` moves a host byte buffer from rank 0 over the
gloo group in one message when it fits `BROADCAST_CHUNK` (a decode step's plan does up to ~50
requests), else two.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from sglrs.distributed.custom_all_reduce import (
    DEFAULT_MAX_BYTES,
    MAX_BYTES_BY_WORLD_SIZE,
    CustomAllReduce,
    PushAllReduce,
    symm_mem_supported,
)
from sglrs.distributed.parallel_state import get_tp_group

if TYPE_CHECKING:
    from sglrs.kernels.gemv import ReduceNorm

logger = logging.getLogger(__name__)

# The first message's size: every step sends it whole, so it is small (a 64 KiB chunk cost a
# batch-1 decode step at tp 2 ~0.2 ms of host time).
BROADCAST_CHUNK = 4096
_LEN_BYTES = 8
_CUSTOM: CustomAllReduce | None = None
# Token ids rank 0 broadcasts each step, summed as float32 through the push kernel (the other
# ranks add zeros): exact for ids below 2^24.
_IDS: PushAllReduce | None = None
MAX_PUSHED_IDS = 4096
MAX_EXACT_FLOAT_ID = 1 << 24


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum `x` over the ranks; returns the sum, which may be `x` itself (reduced in place) or a
    new tensor, so callers must use the result."""
    tp = get_tp_group()
    if tp is None or tp.size == 1:
        return x
    if _CUSTOM is not None and _CUSTOM.handles(x):
        return _CUSTOM(x)
    dist.all_reduce(x, group=tp.device_group)
    return x


def all_reduce_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`(weight * rmsnorm(s), s)` for `s = residual + the sum of x over the ranks`, in one kernel
    where the push all-reduce takes `x`; None where it does not (the caller reduces and
    normalizes separately)."""
    push = _push_state()
    if push is None or not push.handles_rmsnorm(x, residual, weight):
        return None
    return push.rmsnorm(x, residual, weight, eps)


def reduce_norm_epilogue(
    residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> ReduceNorm | None:
    """The push all-reduce's state on this rank as a GEMV's REDUCE_NORM epilogue
    (kernels/gemv.py: the GEMV sums its output over the ranks, adds `residual` and applies the
    RMSNorm of `weight`), or None where there is none (no TP, NCCL only, another dtype)."""
    push = _push_state()
    if push is None or residual.dtype != push.dtype:
        return None
    return push.reduce_norm_epilogue(residual, weight, eps)


def _push_state() -> PushAllReduce | None:
    """The push all-reduce's state for the activations' dtype, where TP set it up."""
    tp = get_tp_group()
    if tp is None or tp.size == 1 or _CUSTOM is None:
        return None
    return _CUSTOM.push


def enable_custom_all_reduce(
    dtype: torch.dtype, max_bytes: int | None = None, vocab_size: int | None = None
) -> bool:
    """Set up the custom all-reduces for `dtype` tensors up to `max_bytes` (default: measured
    per group size) on every rank (call on all ranks together, before graph capture), and the
    token-id broadcast when every id of `vocab_size` is exact in float32. Every rank keeps
    them only if all ranks could build them and they summed correctly everywhere, so no rank
    mixes them with NCCL; returns that."""
    global _CUSTOM, _IDS
    tp = get_tp_group()
    if tp is None or tp.size == 1 or tp.device.type != "cuda":
        return False
    _CUSTOM = _IDS = None
    if max_bytes is None:
        max_bytes = MAX_BYTES_BY_WORLD_SIZE.get(tp.size, DEFAULT_MAX_BYTES)
    custom, ids, ok = None, None, symm_mem_supported()
    if all_reduce_min_int(int(ok)):  # the buffers' rendezvous is a collective: all or none
        try:
            custom = CustomAllReduce(tp.device_group, tp.device, dtype, max_bytes)
            ok = custom.self_test(tp.device)
            if custom.push is not None and vocab_size is not None:
                if vocab_size <= MAX_EXACT_FLOAT_ID:
                    ids = PushAllReduce(
                        tp.device_group, tp.device, torch.float32, 4 * MAX_PUSHED_IDS
                    )
                    ones = torch.ones(4, dtype=torch.float32, device=tp.device)
                    ok = ok and bool((ids(ones) == tp.size).all().item())
        except Exception as e:  # an unsupported fabric or driver: NCCL still works
            logger.warning("custom all-reduce unavailable, using NCCL: %s", e)
            custom, ids, ok = None, None, False
    else:
        ok = False
    if not all_reduce_min_int(int(ok)):
        return False
    _CUSTOM, _IDS = custom, ids
    logger.info("custom all-reduce for %s tensors up to %d KiB", dtype, max_bytes // 1024)
    return True


def disable_custom_all_reduce() -> None:
    """Back to NCCL for every all-reduce, dropping the custom paths' buffers."""
    global _CUSTOM, _IDS
    _CUSTOM = _IDS = None


def all_gather_last_dim(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `x` (same shape) along the last dim, in rank order."""
    tp = get_tp_group()
    if tp is None or tp.size == 1:
        return x
    x = x.contiguous()
    if x.device.type == "cuda":  # one NCCL call into a [size, ...] buffer
        out = torch.empty((tp.size, *x.shape), dtype=x.dtype, device=x.device)
        dist.all_gather_into_tensor(out, x, group=tp.device_group)
        parts = out.unbind(0)
    else:
        parts = [torch.empty_like(x) for _ in range(tp.size)]
        dist.all_gather(parts, x, group=tp.device_group)
    return torch.cat(parts, dim=-1)


def broadcast_from_first(x: torch.Tensor) -> torch.Tensor:
    """TP rank 0's `x` on every rank, in place (same shape and dtype everywhere); a device
    collective, so it queues behind the device work without a host sync."""
    tp = get_tp_group()
    if tp is None or tp.size == 1:
        return x
    dist.broadcast(x, dist.get_global_rank(tp.device_group, 0), group=tp.device_group)
    return x


def broadcast_ids_from_first(ids: torch.Tensor | None, count: int) -> torch.Tensor:
    """TP rank 0's `count` int64 token ids (`ids`, None elsewhere) on every rank, as a new
    tensor; a device operation, queued behind the device work without a host sync."""
    tp = get_tp_group()
    if tp is None or tp.size == 1:
        assert ids is not None
        return ids
    if _IDS is not None and 0 < count <= MAX_PUSHED_IDS:
        # Rank 0 adds the ids, the others zeros: one NVLink hop instead of an NCCL broadcast.
        if tp.rank == 0:
            assert ids is not None
            values = ids.to(torch.float32)
        else:
            values = torch.zeros(count, dtype=torch.float32, device=tp.device)
        return _IDS(values).to(torch.int64)
    out = ids if tp.rank == 0 else torch.empty(count, dtype=torch.int64, device=tp.device)
    assert out is not None
    return broadcast_from_first(out)


def all_reduce_min_int(value: int) -> int:
    """The smallest `value` over the ranks (e.g. the KV capacity every rank can hold)."""
    tp = get_tp_group()
    if tp is None or tp.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=tp.cpu_group)
    return int(t.item())


_CHUNK: np.ndarray | None = None


def _chunk_buffer() -> np.ndarray:
    """The first message's buffer, reused: every step broadcasts one (its bytes are copied out)."""
    global _CHUNK
    if _CHUNK is None:
        _CHUNK = np.zeros(BROADCAST_CHUNK, dtype=np.uint8)
    return _CHUNK


def broadcast_bytes(payload: bytes | None) -> bytearray:
    """Rank 0 passes `payload`; every rank gets it back (a fresh, writable buffer)."""
    tp = get_tp_group()
    if tp is None or tp.size == 1:
        if payload is None:
            raise ValueError("broadcast_bytes: rank 0 must pass the payload")
        return bytearray(payload)
    src = dist.get_global_rank(tp.cpu_group, 0)
    chunk = _chunk_buffer()
    if tp.rank == 0:
        if payload is None:
            raise ValueError("broadcast_bytes: rank 0 must pass the payload")
        n = len(payload)
        chunk[:_LEN_BYTES] = np.frombuffer(n.to_bytes(_LEN_BYTES, "little"), dtype=np.uint8)
        head = min(n, BROADCAST_CHUNK - _LEN_BYTES)
        chunk[_LEN_BYTES : _LEN_BYTES + head] = np.frombuffer(payload, np.uint8, count=head)
    dist.broadcast(torch.from_numpy(chunk), src, group=tp.cpu_group)
    n = int.from_bytes(chunk[:_LEN_BYTES].tobytes(), "little")
    head = min(n, BROADCAST_CHUNK - _LEN_BYTES)
    if head == n:
        return bytearray(chunk[_LEN_BYTES : _LEN_BYTES + n].tobytes())
    rest = np.empty(n - head, dtype=np.uint8)
    if tp.rank == 0:
        assert payload is not None
        rest[:] = np.frombuffer(payload, np.uint8, offset=head)
    dist.broadcast(torch.from_numpy(rest), src, group=tp.cpu_group)
    out = bytearray(n)
    out[:head] = chunk[_LEN_BYTES : _LEN_BYTES + head].tobytes()
    out[head:] = rest.tobytes()
    return out
